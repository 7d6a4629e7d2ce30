"""The page's controls, to the standard users compare it with: an export menu that closes, a
parameters drawer with sliders and defaults, icon actions with names, and a header that is
one row on a phone and on a laptop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.gateway_process import GatewayProcess
from tests.rig.saves_tree import make_saves
from tests.test_ui import (
    MODEL,
    REPLY,
    SEND,
    STOP,
    current_chat,
    open_page,
    pick_model,
    send,
    wait_reply_done,
)
from tests.ui_rig import SCRIPTED_BASE, module_gateway, on_shared

EXPORT = "button[aria-label='Export chat']"
MENU = "[role='menu'][aria-label='Export as']"
DRAWER = "[role='dialog'][aria-label='Generation settings']"
PHONE = {"width": 375, "height": 740}


shared_gateway_process = module_gateway("ui-controls")


@pytest.fixture
def scripted_gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    """Here the module's scripted gateway (tests/ui_rig.py shared_scripted_gateway): each
    test looks at a chat of its own only."""
    yield from on_shared(shared_gateway_process)


def chat_with_a_reply(page: Page, gateway) -> None:
    open_page(page, gateway)
    send(page, "hello there")
    wait_reply_done(page, 1)


def test_the_export_menu_closes_after_a_choice_outside_and_on_escape(page: Page,
                                                                   scripted_gateway) -> None:
    chat_with_a_reply(page, scripted_gateway)
    button = page.locator(EXPORT)
    expect(button).to_have_attribute("aria-haspopup", "menu")
    expect(button).to_contain_text("Export")  # its words on a wide screen
    button.click()
    expect(page.locator(MENU)).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    with page.expect_download() as download:
        page.get_by_role("menuitem", name="Markdown (.md)").click()
    assert download.value.suggested_filename.endswith(".md")
    expect(page.locator(MENU)).to_have_count(0)  # closed after the choice
    expect(button).to_have_attribute("aria-expanded", "false")

    button.click()
    expect(page.locator(MENU)).to_be_visible()
    page.locator(".conversation").click(position={"x": 20, "y": 20})  # outside
    expect(page.locator(MENU)).to_have_count(0)

    # By keyboard: ArrowDown opens it on its first choice, Escape closes it back on the button.
    button.focus()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Markdown (.md)")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="JSON with every branch (.json)")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator(MENU)).to_have_count(0)
    expect(button).to_be_focused()
    assert page.js_errors == []


def test_a_phone_can_export_too_in_the_dark(make_page, scripted_gateway) -> None:
    page = make_page(viewport=PHONE, color_scheme="dark")
    chat_with_a_reply(page, scripted_gateway)
    button = page.locator(EXPORT)
    expect(button).to_be_visible()
    button.click()
    menu = page.locator(MENU)
    expect(menu).to_be_visible()
    box = menu.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
    assert menu.evaluate("m => getComputedStyle(m).backgroundColor") == "rgb(22, 24, 29)"
    with page.expect_download() as download:
        page.get_by_role("menuitem", name="JSON with every branch (.json)").click()
    assert download.value.suggested_filename.endswith(".json")
    expect(menu).to_have_count(0)
    assert page.js_errors == []


def test_the_drawer_has_sliders_defaults_and_resets(page: Page, scripted_gateway) -> None:
    chat_with_a_reply(page, scripted_gateway)
    page.click("text=Parameters")
    drawer = page.locator(DRAWER)
    number = drawer.locator("input[aria-label='Temperature']")
    slider = drawer.locator("input[aria-label='Temperature slider']")
    expect(drawer).to_contain_text("default 0.95")
    expect(drawer).to_contain_text("default 1024")
    expect(drawer).to_contain_text("default 1.0")
    expect(number).to_have_value("")  # the default, not saved on the chat
    expect(slider).to_have_value("0.95")  # the slider stands at the default
    slider.fill("0.4")  # the slider moves the number
    expect(number).to_have_value("0.4")
    number.fill("1.5")  # and the number moves the slider
    expect(slider).to_have_value("1.5")
    number.fill("7")  # beyond the slider's range: the field takes what the API takes
    expect(slider).to_have_value("2")
    expect(number).to_have_value("7")
    drawer.locator("input[aria-label='Max new tokens']").fill("300")
    expect(drawer.locator("input[aria-label='Max new tokens slider']")).to_have_value("300")
    reset = drawer.locator("button[aria-label='Reset Temperature to default']")
    reset.click()
    expect(number).to_have_value("")
    expect(slider).to_have_value("0.95")
    expect(reset).to_be_disabled()
    expect(number).to_be_focused()  # not lost with the button that disabled itself
    drawer.locator("input[aria-label='Top p slider']").fill("0.5")
    drawer.locator("input[aria-label='Repetition penalty']").fill("1.2")
    drawer.locator("button[aria-label='Reset Repetition penalty to default']").click()
    drawer.get_by_role("button", name="Save").click()
    expect(drawer).to_have_count(0)
    assert current_chat(page, scripted_gateway)["params"] == {"max_new_tokens": 300,
                                                             "top_p": 0.5}
    # Saved values come back; "Reset to defaults" empties them all.
    page.click("text=Parameters")
    expect(drawer.locator("input[aria-label='Top p']")).to_have_value("0.5")
    drawer.get_by_role("button", name="Reset to defaults").click()
    expect(drawer.locator("input[aria-label='Top p']")).to_have_value("")
    expect(drawer.locator("input[aria-label='Max new tokens']")).to_have_value("")
    drawer.get_by_role("button", name="Save").click()
    expect(drawer).to_have_count(0)
    assert current_chat(page, scripted_gateway)["params"] == {}
    assert page.js_errors == []


def on_top(control) -> bool:
    """Whether a click at the control's middle lands on it (nothing drawn over it)."""
    return control.evaluate("""el => { const r = el.getBoundingClientRect();
        return el.contains(document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2)); }""")


@pytest.mark.parametrize("width", [1400, 1280, 375])
def test_the_drawer_leaves_the_composer_free_and_escape_closes_it(make_page, scripted_gateway,
                                                                   width: int) -> None:
    """Issue 23: at 1400 px the drawer covered Stop (it intercepted the click), and Esc did
    not close it."""
    page = make_page(viewport={"width": width, "height": 800})
    chat_with_a_reply(page, scripted_gateway)
    parameters = page.get_by_role("button", name="Parameters")
    parameters.click()
    drawer = page.locator(DRAWER)
    expect(drawer).to_be_visible()
    expect(drawer).to_be_focused()  # a dialog: Tab goes on through its fields
    place, composer = drawer.bounding_box(), page.locator("form.composer").bounding_box()
    assert place and composer
    beside = place["x"] >= composer["x"] + composer["width"]
    above = place["y"] + place["height"] <= composer["y"]
    assert beside or above, (place, composer)  # the drawer leaves the composer free

    # Send and Stop work with the drawer open: a long reply, stopped.
    page.fill("#message", "a long one, please")
    assert on_top(page.locator(SEND))
    page.locator(SEND).click()
    stop = page.locator(STOP)
    expect(stop).to_be_visible()
    assert on_top(stop)
    # Pressed once the gateway has named the reply (its first words are on screen): before
    # that, the page can only drop its request, and the reply goes on on the box.
    expect(page.locator(f"{REPLY}[aria-busy='true']")).to_contain_text("sentence 1")
    stop.click()
    wait_reply_done(page, 2)
    assert current_chat(page, scripted_gateway)["messages"][-1]["status"] == "stopped"

    # Esc closes it from its fields, focus back on the button that opened it ...
    expect(drawer).to_be_visible()
    drawer.locator("input[aria-label='Temperature']").focus()
    page.keyboard.press("Escape")
    expect(drawer).to_have_count(0)
    expect(parameters).to_be_focused()
    # ... and from anywhere else on the page, the message box keeping its focus.
    page.keyboard.press("Enter")
    expect(drawer).to_be_visible()
    expect(drawer).to_be_focused()  # it has taken the focus; now the message box takes it
    page.locator("#message").focus()
    page.keyboard.press("Escape")
    expect(drawer).to_have_count(0)
    expect(page.locator("#message")).to_be_focused()
    assert page.js_errors == []


def test_message_actions_are_named_icons_reachable_by_keyboard(page: Page,
                                                             scripted_gateway) -> None:
    chat_with_a_reply(page, scripted_gateway)
    labels = ("Copy message", "Edit message", "Copy reply", "Regenerate reply")
    for label in labels:
        button = page.locator(f"button[aria-label='{label}']")
        expect(button).to_have_count(1)
        expect(button).to_have_attribute("title", label)  # a tooltip
        expect(button.locator("svg")).to_have_count(1)
        expect(button).to_have_text("")  # an icon, named by its label
        size = button.bounding_box()
        assert size is not None and size["width"] >= 28 and size["height"] >= 28, (label, size)
    # One after the other with Tab, each with a visible focus ring.
    page.locator(f"button[aria-label='{labels[0]}']").focus()
    for label in labels:
        button = page.locator(f"button[aria-label='{label}']")
        expect(button).to_be_focused()
        assert button.evaluate("b => b.matches(':focus-visible') "
                               "&& getComputedStyle(b).outlineStyle !== 'none'"), label
        page.keyboard.press("Tab")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("button[aria-label='Copy reply']").click()
    expect(page.locator(f"{REPLY} .act-wrap [aria-live='polite']")).to_have_text("Copied")

    page.locator(f"{REPLY} button[aria-label='Regenerate reply']").click()
    wait_reply_done(page, 1)
    expect(page.locator(f"{REPLY} .branch-pos")).to_have_text("2/2")
    for label in ("Previous version", "Next version"):
        arrow = page.locator(f"{REPLY} button[aria-label='{label}']")
        expect(arrow).to_have_attribute("title", label)
        size = arrow.bounding_box()
        assert size is not None and size["width"] >= 28 and size["height"] >= 28, size
    assert page.locator(f"{REPLY} .branch-pos").evaluate(
        "p => parseFloat(getComputedStyle(p).fontSize)") >= 13
    assert page.js_errors == []


@pytest.mark.parametrize("viewport", [PHONE, {"width": 1280, "height": 800}])
def test_the_header_is_one_row_with_the_model_picker_whole(make_page, scripted_gateway,
                                                          viewport) -> None:
    page = make_page(viewport=viewport)
    chat_with_a_reply(page, scripted_gateway)
    header = page.locator("header.topbar")
    expect(header.locator(".dot.ok")).to_have_count(2)  # the model's status and the box's
    box = header.bounding_box()
    assert box is not None and box["height"] < 60, box
    picker = page.locator(MODEL).bounding_box()
    assert picker is not None and picker["x"] >= 0, picker
    assert picker["x"] + picker["width"] <= viewport["width"], picker
    assert picker["width"] >= 120, "the model picker is squeezed out"
    for control in (header.get_by_role("button", name="Parameters"),
                    header.locator(EXPORT), header.locator(".connection .dot")):
        place = control.bounding_box()
        assert place is not None and place["x"] + place["width"] <= viewport["width"], place
        # on the same row as the picker
        assert abs((place["y"] + place["height"] / 2) - (picker["y"] + picker["height"] / 2)) < 8
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    if viewport["width"] > 760:  # wide: the buttons keep their words
        expect(header.get_by_text("Parameters", exact=True)).to_be_visible()
        expect(header.locator(".connection-text")).to_be_visible()
    assert page.js_errors == []


def test_on_a_phone_the_header_shows_enough_of_the_model_to_tell_it_apart(
        make_page, make_scripted_gateway, tmp_path) -> None:
    """Issue 23: at 375 px the header cut the model to "ti…" (its run and step beside it took
    the room): two checkpoints of two runs could not be told apart."""
    saves = tmp_path / "saves"
    make_saves(saves, SCRIPTED_BASE)
    gateway = make_scripted_gateway(env={"ADAPTER_DIRS": str(saves)})
    page = make_page(viewport=PHONE)
    open_page(page, gateway)
    header = page.locator("header.topbar")
    trigger = page.locator(MODEL)
    for model in ("tiny--lora--sft-a--checkpoint-10", "tiny--lora--sft-b--checkpoint-100"):
        pick_model(page, model)
        assert (trigger.get_attribute("title") or "").split("\n")[0] == model  # whole
        fits = trigger.evaluate("""t => { const id = t.querySelector('.trigger-id');
            return { whole: id.scrollWidth <= id.clientWidth + 1
                       && id.scrollHeight <= id.clientHeight + 1,
                     inside: t.scrollWidth <= t.clientWidth + 1 }; }""")
        assert fits == {"whole": True, "inside": True}, (model, fits)
        expect(trigger.locator(".trigger-id")).to_have_text(model)
        # Still one row, on the screen.
        box = header.bounding_box()
        assert box is not None and box["height"] < 60, box
        place = trigger.bounding_box()
        assert place is not None and place["x"] + place["width"] <= PHONE["width"], place
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.js_errors == []
