"""The header's model picker on a LlamaFactory saves/ tree (tests/rig/saves_tree.py): a
searchable popover grouped by box, base and run, checkpoints by step with their loss,
template, age and load status; broken adapters listed but not choosable; keys as in a quick
pick; a rescan each time it opens; a chat that remembers its model, and stays readable when
that model's folder goes."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.gateway_process import GatewayProcess
from tests.rig.saves_tree import make_saves
from tests.test_ui import (
    LAST_REPLY,
    MODEL,
    MODELS,
    REPLY,
    SEND,
    current_chat,
    model_option,
    open_page,
    open_picker,
    pick_model,
    send,
    wait_reply_done,
)
from tests.ui_rig import on_shared, shared_scripted_gateway

SEARCH = "input[aria-label='Search models']"
PHONE = {"width": 375, "height": 740}
A10, A20 = "tiny--lora--sft-a--checkpoint-10", "tiny--lora--sft-a--checkpoint-20"
A_FINAL = "tiny--lora--sft-a"
B100, B200, B_FINAL = ("tiny--lora--sft-b--checkpoint-100", "tiny--lora--sft-b--checkpoint-200",
                       "tiny--lora--sft-b")
BROKEN_CONFIG, NO_WEIGHTS = "tiny--lora--broken-config", "tiny--lora--broken-no-weights"
# The list's order: the base's own rows, then its runs by path (those with nothing usable
# last), each run's checkpoints by step and its final adapter after them.
ORDER = ["base", "default", A10, A20, A_FINAL, B100, B200, B_FINAL, BROKEN_CONFIG, NO_WEIGHTS]
AGE = re.compile(r"(just now|\d+ s ago|\d+ min ago)")


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    folder = tmp_path / "saves"
    make_saves(folder, "/models/tiny-base")
    return folder


@pytest.fixture
def gateway(make_scripted_gateway, saves: Path, tmp_path: Path):
    """A scripted gateway whose ADAPTER_DIRS are the saves tree and a folder that is missing."""
    return make_scripted_gateway(env={"ADAPTER_DIRS": f"{saves},{tmp_path / 'no-such-saves'}"})


@pytest.fixture(scope="module")
def shared_gateway_process(tmp_path_factory: pytest.TempPathFactory
                           ) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("ui-picker")
    make_saves(folder / "saves", "/models/tiny-base")
    dirs = f"{folder / 'saves'},{folder / 'no-such-saves'}"
    with shared_scripted_gateway(folder / "gateway", env={"ADAPTER_DIRS": dirs}) as gateway:
        yield gateway


@pytest.fixture
def shared_gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    """The same, shared by the module's tests that neither change its saves tree nor look at
    what is loaded before they load it (tests/ui_rig.py shared_scripted_gateway)."""
    yield from on_shared(shared_gateway_process)


def shown_ids(page: Page) -> list[str]:
    return page.locator(f"{MODELS} [role='option']").evaluate_all(
        "options => options.map(o => o.dataset.model)")


def active_id(page: Page) -> str:
    return page.locator(SEARCH).get_attribute("aria-activedescendant").removeprefix(
        "model-option-")


def test_the_picker_lists_the_tree_by_box_base_and_run(page: Page, gateway) -> None:
    open_page(page, gateway)
    open_picker(page)
    expect(page.locator(".pick-box")).to_contain_text("Box local")
    expect(page.locator(".pick-base")).to_have_count(1)
    expect(page.locator(".pick-base")).to_contain_text("tiny-base")
    expect(page.locator(f"{MODELS} [role='option']")).to_have_count(len(ORDER))
    assert shown_ids(page) == ORDER
    runs = page.locator(f"{MODELS} .pick-run")
    expect(runs.locator(".pick-run-name")).to_have_text(
        ["tiny/lora/sft-a", "tiny/lora/sft-b", "tiny/lora/broken-config",
         "tiny/lora/broken-no-weights"])
    expect(runs.first.locator(".pick-run-template")).to_have_text("qwen")

    # Each row: its step, loss, template, age and whether it is resident.
    row = model_option(page, A20)
    expect(row.locator(".pick-step")).to_have_text("step 20")
    expect(row.locator(".pick-facts")).to_contain_text("loss 1.00 · eval 2.50 · template qwen")
    expect(row.locator(".pick-facts")).to_contain_text(AGE)
    expect(row.locator(".pick-status")).to_have_text("not loaded")
    expect(model_option(page, A_FINAL).locator(".pick-step")).to_have_text("final · step 30")
    expect(model_option(page, A_FINAL).locator(".pick-facts")).to_contain_text("loss 0.123")
    expect(model_option(page, "default")).to_have_attribute("aria-selected", "true")
    expect(model_option(page, "base").locator(".pick-what")).to_have_text("base model alone")
    # Run b was trained with another template than .env's: every row of it says so.
    for model_id in (B100, B200, B_FINAL):
        expect(model_option(page, model_id).locator(".pick-facts")).to_contain_text(
            "template default")
        expect(model_option(page, model_id).locator(".pick-note.warning")).to_contain_text(
            "trained with template 'default'")
    expect(model_option(page, A10).locator(".pick-note")).to_have_count(0)
    # The missing folder of ADAPTER_DIRS, under the list.
    expect(page.locator(".pick-foot")).to_contain_text("no-such-saves: no such folder on the box")

    # Broken adapters: listed with their reason, and neither a click nor Enter chooses them.
    broken = model_option(page, NO_WEIGHTS)
    expect(broken).to_have_attribute("aria-disabled", "true")
    expect(broken.locator(".pick-note.problem")).to_contain_text("no weights")
    expect(model_option(page, BROKEN_CONFIG).locator(".pick-note.problem")).to_contain_text(
        "unreadable adapter_config.json")
    expect(broken.locator(".pick-status")).to_have_text("unusable")
    broken.click(force=True)
    expect(page.locator(MODELS)).to_be_visible()  # still open, nothing chosen
    expect(model_option(page, "default")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("End")
    assert active_id(page) == NO_WEIGHTS
    page.keyboard.press("Enter")
    expect(page.locator(MODELS)).to_be_visible()
    expect(model_option(page, "default")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Escape")
    expect(page.locator(MODEL)).to_contain_text("default")
    expect(page.locator(MODEL)).not_to_contain_text("broken")
    assert page.js_errors == []


def test_search_filters_and_the_keys_work_as_in_a_quick_pick(page: Page,
                                                            shared_gateway) -> None:
    gateway = shared_gateway
    open_page(page, gateway)
    trigger = page.locator(MODEL)
    trigger.focus()
    page.keyboard.press("Enter")  # Enter on the button opens it, on the search box
    expect(page.locator(MODELS)).to_be_visible()
    expect(page.locator(SEARCH)).to_be_focused()
    expect(trigger).to_have_attribute("aria-expanded", "true")
    assert active_id(page) == "default"  # it opens on the chat's model

    page.keyboard.type("checkpoint-100")
    expect(page.locator(f"{MODELS} [role='option']")).to_have_count(1)
    assert shown_ids(page) == [B100]
    expect(page.locator(".pick-count")).to_have_text(f"1 of {len(ORDER)} models")
    page.fill(SEARCH, "sft-b 200")  # every word somewhere: id, run, base, template
    expect(page.locator(f"{MODELS} [role='option']")).to_have_count(1)
    assert shown_ids(page) == [B200]
    page.fill(SEARCH, "default")  # a template (run b's), and .env's `default` model
    expect(page.locator(f"{MODELS} [role='option']")).to_have_count(4)
    assert shown_ids(page) == ["default", B100, B200, B_FINAL]
    page.fill(SEARCH, "nothing like it")
    expect(page.locator(".pick-empty")).to_have_text("No model matches “nothing like it”.")
    page.fill(SEARCH, "")
    expect(page.locator(f"{MODELS} [role='option']")).to_have_count(len(ORDER))

    page.keyboard.press("Escape")  # closes, and the focus is back on the button
    expect(page.locator(MODELS)).to_have_count(0)
    expect(trigger).to_be_focused()
    expect(trigger).to_have_attribute("aria-expanded", "false")

    page.keyboard.press("Space")  # Space opens it too
    expect(page.locator(SEARCH)).to_be_focused()
    page.keyboard.press("Home")
    assert active_id(page) == "base"
    page.keyboard.press("End")
    assert active_id(page) == NO_WEIGHTS
    page.keyboard.press("ArrowDown")  # round to the top
    assert active_id(page) == "base"
    page.keyboard.press("ArrowUp")
    assert active_id(page) == NO_WEIGHTS
    page.keyboard.press("Escape")
    expect(trigger).to_be_focused()

    page.keyboard.press("Enter")
    expect(page.locator(SEARCH)).to_be_focused()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # from `default`: sft-a's checkpoint-10, then -20
    assert active_id(page) == A20
    expect(model_option(page, A20)).to_have_class(re.compile(r"\bactive\b"))
    with page.expect_response(lambda r: r.request.method == "POST"
                              and r.url.endswith(f"/api/models/{A20}/load")):
        page.keyboard.press("Enter")
    expect(page.locator(MODELS)).to_have_count(0)
    expect(trigger).to_contain_text(A20)
    expect(trigger).to_contain_text("sft-a · step 20")
    expect(trigger).to_be_focused()

    page.keyboard.type("sft-b 100")  # typed on the button: it opens, filtering
    expect(page.locator(SEARCH)).to_have_value("sft-b 100")
    assert shown_ids(page) == [B100]
    assert active_id(page) == B100
    page.keyboard.press("Escape")
    expect(trigger).to_be_focused()

    open_picker(page)  # a click outside closes it
    conversation = page.locator(".conversation")
    width = conversation.bounding_box()["width"]
    conversation.click(position={"x": width - 30, "y": 300})  # beside the popover
    expect(page.locator(MODELS)).to_have_count(0)
    assert page.js_errors == []


def test_a_chosen_checkpoint_answers_and_the_chat_remembers_it(page: Page,
                                                              shared_gateway) -> None:
    gateway = shared_gateway
    open_page(page, gateway)
    pick_model(page, A20)
    expect(page.locator(".model-status")).to_contain_text("Ready")
    expect(page.locator(".empty-state .model-facts")).to_contain_text("tiny/lora/sft-a · step 20")
    send(page, "which checkpoint")
    wait_reply_done(page, 1)
    expect(page.locator(REPLY)).to_contain_text("from tiny-base + checkpoint-20: which checkpoint")
    assert current_chat(page, gateway)["model"] == A20

    page.reload()  # the chat comes back on its model
    expect(page.locator(REPLY)).to_contain_text("+ checkpoint-20")
    expect(page.locator(MODEL)).to_contain_text(A20)
    expect(page.locator(MODEL)).to_contain_text("sft-a · step 20")
    open_picker(page)
    expect(model_option(page, A20)).to_have_attribute("aria-selected", "true")
    expect(model_option(page, A20).locator(".pick-status")).to_have_text("loaded")
    expect(model_option(page, "default")).to_have_attribute("aria-selected", "false")
    page.keyboard.press("Escape")

    page.click("text=+ New chat")  # a new chat starts on the model on screen
    expect(page.locator(MODEL)).to_contain_text(A20)
    send(page, "new one")
    wait_reply_done(page, 1)
    expect(page.locator(LAST_REPLY)).to_contain_text("+ checkpoint-20: new one")
    assert page.js_errors == []


def test_opening_the_picker_rescans_the_box(page: Page, gateway, saves: Path) -> None:
    open_page(page, gateway)
    open_picker(page)
    expect(page.locator(f"{MODELS} [role='option']")).to_have_count(len(ORDER))
    page.keyboard.press("Escape")
    # The run goes on training: a new checkpoint lands after the page has loaded.
    run = saves / "tiny/lora/sft-a"
    shutil.copytree(run / "checkpoint-20", run / "checkpoint-30")
    with page.expect_response(lambda r: r.request.method == "POST"
                              and r.url.endswith("/api/models/refresh")) as refreshed:
        page.click(MODEL)
    assert refreshed.value.ok
    expect(page.locator(MODELS)).to_be_visible()  # the list stays while the box is scanned
    new = model_option(page, "tiny--lora--sft-a--checkpoint-30")
    expect(new).to_be_visible()
    expect(new.locator(".pick-step")).to_have_text("step 30")
    assert shown_ids(page)[2:6] == [A10, A20, "tiny--lora--sft-a--checkpoint-30", A_FINAL]
    expect(page.locator(".pick-foot")).to_contain_text("Scanned")
    new.click()
    expect(page.locator(MODEL)).to_contain_text("tiny--lora--sft-a--checkpoint-30")
    send(page, "newest")
    wait_reply_done(page, 1)
    expect(page.locator(REPLY)).to_contain_text("+ checkpoint-30: newest")
    assert page.js_errors == []


def test_a_chat_whose_model_went_stays_readable_and_says_so(page: Page, gateway,
                                                           saves: Path) -> None:
    open_page(page, gateway)
    pick_model(page, A10)
    send(page, "before it went")
    wait_reply_done(page, 1)
    expect(page.locator(REPLY)).to_contain_text("+ checkpoint-10: before it went")

    shutil.rmtree(saves / "tiny/lora/sft-a/checkpoint-10")
    open_picker(page)  # the rescan finds it gone
    expect(model_option(page, A10)).to_have_count(0)
    page.keyboard.press("Escape")
    gone = page.locator(".notice.model-gone")
    expect(gone).to_contain_text(f"{A10}, is no longer on the box")
    expect(gone).to_contain_text("The conversation stays readable")
    expect(page.locator(MODEL)).to_contain_text(A10)
    expect(page.locator(f"{MODEL} .trigger-gone")).to_have_text("gone")
    expect(page.locator(REPLY)).to_contain_text("+ checkpoint-10: before it went")
    page.fill("#message", "and now?")
    expect(page.locator(SEND)).to_be_disabled()
    expect(page.locator("#send-why")).to_have_text(
        f"The model {A10} is gone: pick another model above to send.")

    page.reload()  # still readable after a reload, and still saying so
    expect(page.locator(REPLY)).to_contain_text("+ checkpoint-10: before it went")
    expect(page.locator(".notice.model-gone")).to_contain_text("no longer on the box")
    expect(page.locator(".model-status")).to_contain_text("Not on the box")

    pick_model(page, A20)  # another model, and the chat goes on
    expect(page.locator(".notice.model-gone")).to_have_count(0)
    send(page, "and now?")
    wait_reply_done(page, 2)
    expect(page.locator(LAST_REPLY)).to_contain_text("+ checkpoint-20: and now?")
    assert page.js_errors == []


def test_on_a_phone_the_popover_fits_and_a_row_can_be_chosen(make_page,
                                                            shared_gateway) -> None:
    gateway = shared_gateway
    page = make_page(viewport=PHONE, has_touch=True)
    open_page(page, gateway)
    open_picker(page)
    popover = page.locator(".pick-pop").bounding_box()
    header = page.locator("header.topbar").bounding_box()
    assert popover is not None and header is not None
    assert popover["x"] >= 0 and popover["x"] + popover["width"] <= PHONE["width"], popover
    assert popover["width"] >= PHONE["width"] - 2, "the popover takes the phone's width"
    assert abs(popover["y"] - (header["y"] + header["height"])) <= 2, "right under the header"
    assert popover["y"] + popover["height"] <= PHONE["height"], popover
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    listbox = page.locator(MODELS)
    assert listbox.evaluate("l => l.scrollHeight > l.clientHeight"), "the list scrolls"
    row = model_option(page, B200)
    row.scroll_into_view_if_needed()
    box = row.bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"], box
    row.tap()
    expect(page.locator(MODELS)).to_have_count(0)
    expect(page.locator(MODEL)).to_contain_text("sft-b · step 200")
    trigger = page.locator(MODEL).bounding_box()
    assert trigger is not None and trigger["x"] + trigger["width"] <= PHONE["width"], trigger
    assert page.js_errors == []


def test_each_run_with_a_curve_has_its_sparkline(page: Page, shared_gateway) -> None:
    gateway = shared_gateway
    open_page(page, gateway)
    open_picker(page)
    runs = page.locator(f"{MODELS} .pick-run")
    expect(runs).to_have_count(4)
    for name, first, last in (("sft-a", "2.80", "0.00"), ("sft-b", "1.88", "1.00")):
        run = runs.filter(has=page.locator(".pick-run-name", has_text=f"tiny/lora/{name}"))
        chart = run.locator("svg.sparkline")
        expect(chart).to_have_count(1)
        expect(chart.locator("polyline.spark-train")).to_have_count(1)
        assert len(chart.locator("polyline.spark-train").get_attribute("points").split()) > 5
        expect(chart).to_have_attribute("aria-label", re.compile(
            rf"training loss {first} → {last}"))
    # sft-a's eval point, and a tick at each checkpoint's step
    sft_a = runs.first.locator("svg.sparkline")
    expect(sft_a.locator(".spark-eval-dot")).to_have_count(1)
    expect(sft_a.locator(".spark-mark")).to_have_count(2)
    for name in ("broken-config", "broken-no-weights"):  # no curve, no chart
        run = runs.filter(has=page.locator(".pick-run-name", has_text=f"tiny/lora/{name}"))
        expect(run.locator("svg")).to_have_count(0)
    assert page.js_errors == []


def test_in_cli_mode_the_picker_says_switching_starts_a_process(page: Page,
                                                                make_scripted_gateway,
                                                                saves: Path) -> None:
    gateway = make_scripted_gateway(env={"ADAPTER_DIRS": str(saves)}, mode="cli")
    open_page(page, gateway)
    open_picker(page)
    expect(page.locator(".pick-box .badge")).to_have_text("cli")
    expect(page.locator(".pick-cli")).to_contain_text(
        "choosing another starts (and loads) another process")
    pick_model(page, B100)
    send(page, "from the cli")
    wait_reply_done(page, 1)
    expect(page.locator(REPLY)).to_contain_text("+ checkpoint-100")
    assert page.js_errors == []


def test_a_whole_fine_tune_says_it_starts_a_process_of_its_own(page: Page,
                                                               make_scripted_gateway,
                                                               tmp_path: Path) -> None:
    """A full fine-tune's checkpoint is a model of its own (`shared_base: false`): listed
    apart from the base's adapters, and saying that choosing it starts another process."""
    whole = tmp_path / "whole-model"
    whole.mkdir()
    (whole / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (whole / "model.safetensors").write_bytes(b"\0" * 100)
    saves = tmp_path / "saves-full"
    make_saves(saves, "/models/tiny-base", full_model=str(whole), broken=False)
    gateway = make_scripted_gateway(env={"ADAPTER_DIRS": str(saves)})
    model_id = "tiny--full--sft-full--checkpoint-5"
    listed = gateway.scanned_models()
    assert listed[model_id]["shared_base"] is False
    open_page(page, gateway)
    open_picker(page)
    expect(page.locator(".pick-base-name")).to_have_text(["tiny-base", "Whole fine-tuned models"])
    assert shown_ids(page)[-1] == model_id
    row = model_option(page, model_id)
    expect(row.locator(".pick-name")).to_have_text("checkpoint-5")
    expect(row.locator(".pick-note.process")).to_contain_text(
        "choosing it starts (and loads) another process on the box")
    expect(model_option(page, A20).locator(".pick-note.process")).to_have_count(0)
    expect(page.locator(".pick-cli")).to_have_count(0)  # script mode
    assert page.js_errors == []
