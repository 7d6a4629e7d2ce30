"""The doctor's panel and the live box status in the page (issue 16), in Debian's Chromium
against real gateways: the doctor streamed check by check against a misconfigured box, each
mark named and each fix copyable; "Run doctor" from a box error; the header's pill per box
with the GPUs a stand-in `nvidia-smi` reports (real captured output) and its details; and a
box behind a real sshd taken down and brought back: the page says so, stays readable,
searchable and exportable, and recovers by itself. At 1280 px and at 375 px."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.gateway_process import GatewayProcess
from tests.rig.sshd import TestSSHD
from tests.test_ui import (
    LAST_REPLY,
    MODEL,
    MODELS,
    REPLY,
    open_picker,
    pick_model,
    send,
    wait_reply_done,
)
from tests.ui_rig import on_shared, shared_scripted_gateway, stand_in_nvidia_smi

WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}
PILL = "button.box-pill"
POPOVER = "[role='dialog'].box-pop"
DOCTOR = "main[aria-label='Doctor']"
BANNER = ".box-down"
SECTIONS = ["Configuration", "SSH", "Remote shell", "LlamaFactory", "Models", "Smoke chat"]
MARK_WORDS = {"pass": ("✓", "passed"), "warn": ("!", "warning"), "fail": ("✗", "failed"),
              "skip": ("–", "skipped")}
SUMMARY = re.compile(r"\d+ passed, \d+ warning\(s\), \d+ failed, \d+ skipped in [\d.]+ s")
# Box status read twice a second, and a dead link noticed within two: the tests wait on
# state, and these keep that wait short.
FAST = {"BOX_STATUS_INTERVAL": "0.5", "SSH_KEEPALIVE_INTERVAL": "1",
        "SSH_KEEPALIVE_COUNT_MAX": "2", "SSH_CONNECT_TIMEOUT": "3"}
# A model folder that is missing on the box, named to be HTML if anything rendered it so.
HOSTILE_BASE = "/models/<img src=x onerror=window.__xss=1>-missing"


@pytest.fixture
def box_sshd(tmp_path: Path):
    """A real sshd on 127.0.0.1 for a box the test can take down and bring back."""
    folder = tmp_path / "sshd"
    folder.mkdir()
    server = TestSSHD(folder)
    yield server
    server.stop()


def open_app(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator(PILL).first).to_be_visible()


def no_sideways_scroll(page: Page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways: {scroll}px"
    header = page.locator("header.topbar").bounding_box()
    assert header is not None and header["height"] < 60, header  # one row


def within(page: Page, locator, width: int) -> None:
    place = locator.bounding_box()
    assert place is not None and place["x"] >= 0 and place["x"] + place["width"] <= width, place


def finding(page: Page, section: str, name: str):
    return page.locator(f"{DOCTOR} section[aria-label='{section}'] "
                        f"li.doctor-check[data-name='{name}']")


def expected_finding(gateway, section: str, name: str, box: str | None = None) -> dict:
    """The same check as GET /api/doctor reports it (what the page must show, word for word)."""
    report = gateway.http.get("/api/doctor", params={"box": box} if box else None).json()
    return next(f for f in report["findings"] if f["section"] == section and f["name"] == name)


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280px", "375px"])
def test_the_doctor_streams_its_checks_then_the_summary_and_each_fix(
        make_page, make_scripted_gateway, viewport) -> None:
    # The base model is missing on the box (a real failure of the Models checks), and the
    # smoke chat's load takes 2.5 s: long enough to see the page wait for it.
    gateway = make_scripted_gateway(base_model_path=HOSTILE_BASE, load_s=2.5)
    page = make_page(viewport=viewport)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_app(page, gateway.url)
    with page.expect_request(lambda r: "/api/doctor/stream" in r.url) as asked:
        if viewport is WIDE:  # from the chat list, then its button
            page.locator("nav[aria-label='Chats']").get_by_role("button", name="Doctor").click()
            expect(page.locator(DOCTOR)).to_be_visible()
            expect(page.locator(f"{DOCTOR} .doctor-plan li")).to_have_text(SECTIONS)
            page.get_by_role("button", name="Run doctor").click()
        else:  # from the header's box status: its details hold a Run doctor link
            page.locator(PILL).click()
            expect(page.locator(POPOVER)).to_be_visible()
            page.locator(POPOVER).get_by_role("link", name="Run doctor").click()
    assert "box=" not in asked.value.url  # one box: the gateway's own, no ?box
    panel = page.locator(DOCTOR)
    expect(panel).to_be_visible()
    assert page.url.endswith("#/doctor")

    # Streaming: while the smoke chat loads, the checks before it are on screen, the page
    # says what it waits for (with a spinner and the seconds), and there is no summary yet.
    waiting = panel.locator(".doctor-waiting")
    expect(waiting).to_contain_text("loading the model on the box", timeout=30_000)
    expect(waiting.locator(".spinner")).to_be_visible()
    expect(panel).to_have_attribute("aria-busy", "true")
    expect(panel.locator(".doctor-summary")).to_have_count(0)
    expect(finding(page, "Models", "base")).to_have_attribute("data-status", "fail")
    expect(page.locator(f"{DOCTOR} .doctor-section h2")).to_have_text(SECTIONS)

    # The end: the summary line, and no waiting left.
    summary = panel.locator(".doctor-summary")
    expect(summary).to_be_visible(timeout=30_000)
    expect(summary).to_contain_text(SUMMARY)
    expect(summary).to_contain_text("fix the first failure")
    expect(panel).to_have_attribute("aria-busy", "false")
    expect(waiting).to_have_count(0)

    # Each check has its mark, named for screen readers, not told by colour alone.
    marks = page.locator(f"{DOCTOR} li.doctor-check").evaluate_all(
        "items => items.map(li => [li.dataset.status, li.querySelector('.doctor-mark').textContent,"
        " li.querySelector('.doctor-mark').getAttribute('aria-label')])")
    assert marks and all(MARK_WORDS[status] == (mark, word) for status, mark, word in marks), marks
    assert {status for status, _, _ in marks} >= {"pass", "warn", "fail"}

    # The failing check: what it found, as text (the folder's name is not markup), and its
    # fix word for word as GET /api/doctor gives it, copyable.
    want = expected_finding(gateway, "Models", "base")
    base = finding(page, "Models", "base")
    expect(base.locator(".doctor-mark")).to_have_attribute("aria-label", "failed")
    expect(base.locator(".doctor-found")).to_have_text(want["found"])
    assert HOSTILE_BASE in want["found"]
    expect(base.locator(".doctor-fix pre")).to_have_text(want["fix"])
    assert panel.locator("img, script, [onerror]").count() == 0
    assert page.evaluate("window.__xss") is None
    base.get_by_role("button", name="Copy the fix for base").click()
    expect(base.locator("[aria-live='polite']")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == want["fix"]
    # A check that passed shows no fix.
    expect(finding(page, "SSH", "connection").locator(".doctor-fix")).to_have_count(0)

    # Run it again: a new run, streamed the same way.
    with page.expect_request(lambda r: "/api/doctor/stream" in r.url):
        panel.get_by_role("button", name="Run again").click()
    expect(panel.locator(".doctor-summary")).to_be_visible(timeout=30_000)
    expect(finding(page, "Models", "base")).to_have_attribute("data-status", "fail")
    no_sideways_scroll(page, viewport["width"])
    assert page.js_errors == []


def test_run_doctor_from_a_load_error_and_from_a_failed_reply(page: Page,
                                                              make_scripted_gateway) -> None:
    gateway = make_scripted_gateway(base_model_path="/models/broken-base")
    open_app(page, gateway.url)
    pick_model(page, "base")
    failure = page.locator(".load-failure")
    expect(failure).to_contain_text("base did not load")
    with page.expect_request(lambda r: "/api/doctor/stream" in r.url):
        failure.get_by_role("link", name="Run doctor").click()
    expect(page.locator(DOCTOR)).to_be_visible()
    expect(page.locator(f"{DOCTOR} .doctor-summary")).to_contain_text(SUMMARY, timeout=30_000)
    expect(finding(page, "Smoke chat", "chat")).to_have_attribute("data-status", "fail")

    page.go_back()  # the chat again; its next reply fails on the box
    expect(page.locator(MODEL)).to_contain_text("base")
    send(page, "please raise an error")
    wait_reply_done(page, 1)
    error = page.locator(f"{REPLY} .notice.error")
    expect(error).to_be_visible()
    with page.expect_request(lambda r: "/api/doctor/stream" in r.url):
        error.get_by_role("link", name="Run doctor").click()
    expect(page.locator(f"{DOCTOR} .doctor-summary")).to_contain_text(SUMMARY, timeout=30_000)
    assert page.js_errors == []


@pytest.fixture(scope="module")
def gpu_gateway_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("ui-gpus")
    tools = stand_in_nvidia_smi(folder / "tools")
    with shared_scripted_gateway(folder / "gateway", env={
            "PATH": f"{tools}:{os.environ['PATH']}", **FAST}) as gateway:
        yield gateway


@pytest.fixture
def gpu_gateway(gpu_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    """A scripted gateway whose box has the stand-in `nvidia-smi` (two A100s), shared by the
    viewports' runs of the test below: each loads the same models in a chat of its own."""
    yield from on_shared(gpu_gateway_process)


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280px", "375px"])
def test_the_header_shows_each_gpu_and_the_box_in_detail(make_page, gpu_gateway,
                                                         viewport) -> None:
    gateway = gpu_gateway
    page = make_page(viewport=viewport)
    open_app(page, gateway.url)
    pill = page.locator(PILL)
    expect(pill).to_have_count(1)
    expect(pill).to_have_attribute("aria-label", re.compile(
        r"GPU 0 \(NVIDIA A100-SXM4-80GB\): 97% busy \(in use\), 71\.7 / 80\.0 GiB; "
        r"GPU 1 \(NVIDIA A100-SXM4-80GB\): utilisation unknown, 0\.0 / 80\.0 GiB"))
    meters = pill.locator(".gpu-meter")
    expect(meters).to_have_count(2)
    expect(meters.nth(0)).to_have_class(re.compile(r"\bbusy\b"))  # training: shows busy
    expect(meters.nth(1)).not_to_have_class(re.compile(r"\bbusy\b"))
    expect(meters.nth(1).locator(".gpu-bar.util")).to_have_class(re.compile(r"\bunknown\b"))
    expect(pill.locator(".dot.ok")).to_be_visible()
    if viewport is WIDE:  # the host, the round trip and the bars
        expect(pill.locator(".connection-text")).to_have_text(re.compile(r"^local · [\d.]+ ms$"))
        expect(meters.nth(0)).to_be_visible()
    else:  # a phone: the dot and a short label
        expect(pill.locator(".box-short")).to_have_text("Box")
        expect(pill.locator(".connection-text")).to_be_hidden()
        expect(meters.nth(0)).to_be_hidden()
    no_sideways_scroll(page, viewport["width"])

    send(page, "load something")  # a wrapper runs now, its base and adapter resident
    wait_reply_done(page, 1)
    pill.click()
    details = page.locator(POPOVER)
    expect(details).to_be_visible()
    expect(pill).to_have_attribute("aria-expanded", "true")
    expect(details).to_have_attribute("aria-label", "Box main")
    within(page, details, viewport["width"])
    facts = details.locator(".box-facts")
    expect(facts).to_contain_text("Hostlocal")
    expect(facts).to_contain_text("Modescript")
    expect(facts).to_contain_text(re.compile(r"Stateconnected · checked (just now|\d+ s ago)"))
    expect(facts).to_contain_text(re.compile(r"Round trip[\d.]+ ms"))
    expect(facts).to_contain_text(re.compile(r"Load \(1, 5, 15 min\)[\d.]+  [\d.]+  [\d.]+"))
    box = gateway.http.get("/api/health").json()["boxes"][0]
    gpus = details.locator("li.box-gpu")
    expect(gpus).to_have_count(2)
    expect(gpus.nth(0)).to_contain_text("NVIDIA A100-SXM4-80GB")
    expect(gpus.nth(0).locator(".box-tag.busy")).to_have_text("busy")
    expect(gpus.nth(0).locator(".box-gpu-util")).to_have_text("97% util")
    expect(gpus.nth(0).locator(".box-gpu-mem")).to_have_text("71.7 / 80.0 GiB")
    expect(gpus.nth(1).locator(".box-tag")).to_have_count(0)
    expect(gpus.nth(1).locator(".box-gpu-util")).to_have_text("util n/a")
    expect(gpus.nth(1).locator(".box-gpu-mem")).to_have_text("0.0 / 80.0 GiB")
    loaded = details.locator(".box-loaded li")
    expect(loaded.locator(".box-loaded-id")).to_have_text(["base", "default"])
    expect(loaded.nth(0)).to_contain_text("base")
    expect(loaded.nth(1)).to_contain_text("adapter")
    wrapper = box["wrapper"] or gateway.http.get("/api/health").json()["boxes"][0]["wrapper"]
    expect(facts).to_contain_text(
        f"Box wrapper{wrapper['version']} · protocol {wrapper['protocol']}")
    expect(details.get_by_role("link", name="Run doctor")).to_have_attribute("href",
                                                                            "#/doctor/run")
    page.keyboard.press("Escape")  # closes it, back on the pill
    expect(details).to_have_count(0)
    expect(pill).to_be_focused()
    expect(page.locator(REPLY)).to_have_count(1)  # Escape did not touch the chat
    assert page.js_errors == []


def test_a_box_without_a_gpu_says_cpu(page: Page, make_scripted_gateway) -> None:
    gateway = make_scripted_gateway(env=FAST)  # no nvidia-smi on this machine's PATH
    assert gateway.http.get("/api/health").json()["boxes"][0]["gpus"] == []
    open_app(page, gateway.url)
    pill = page.locator(PILL)
    expect(pill.locator(".box-cpu")).to_have_text("CPU")
    expect(pill.locator(".gpu-meter")).to_have_count(0)
    pill.click()
    expect(page.locator(f"{POPOVER} .box-none").first).to_contain_text("No GPU")
    expect(page.locator(f"{POPOVER} .box-loaded-id")).to_have_count(0)
    expect(page.locator(POPOVER)).to_contain_text("Nothing loaded.")
    page.mouse.click(600, 500)  # outside: closes it
    expect(page.locator(POPOVER)).to_have_count(0)
    # By keyboard: Enter opens it, Tab goes through its link, and on out closes it.
    pill.focus()
    page.keyboard.press("Enter")
    expect(page.locator(POPOVER)).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(POPOVER).get_by_role("link", name="Run doctor")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(POPOVER)).to_have_count(0)
    assert page.js_errors == []


def test_a_box_that_goes_down_leaves_chats_readable_and_comes_back_by_itself(
        page: Page, make_scripted_gateway, box_sshd: TestSSHD) -> None:
    """The gateway's box is the scripted double behind a real sshd; the sshd is stopped (a
    rented box switched off) and started again on the same port (the box back)."""
    gateway = make_scripted_gateway(env={**box_sshd.settings_env(), **FAST})
    _, events = gateway.chat({"message": "alpha apples"})
    first = next(data["chat_id"] for event, data in events if event == "meta")
    gateway.chat({"message": "beta bananas"})
    page.goto(f"{gateway.url}/#/chat/{first}")
    expect(page.locator(".user-text")).to_have_text(["alpha apples"])
    pill = page.locator(PILL)
    expect(pill).to_have_class(re.compile(r"state-connected"))
    expect(page.locator(BANNER)).to_have_count(0)

    box_sshd.stop()
    banner = page.locator(BANNER)
    expect(banner).to_contain_text("Box down: reading, search and export still work")
    # Why, in a few words; the box's whole message in its tooltip and the box's details.
    expect(banner).to_contain_text("work. It cannot be reached")
    expect(banner.locator(".box-down-why")).to_have_attribute(
        "title", re.compile(r"cannot reach 127\.0\.0\.1"))
    expect(banner.get_by_role("link", name="Run doctor")).to_have_attribute("href", "#/doctor/run")
    expect(pill).to_have_class(re.compile(r"state-down"))
    expect(pill.locator(".dot.bad")).to_be_visible()
    expect(page.locator(".connection")).to_contain_text("Box down")
    # The model's wrapper went with the box: not a load that failed.
    expect(page.locator(".lost-with-box")).to_contain_text("stopped when the box went away")
    expect(page.locator(".load-failure")).to_have_count(0)
    expect(page.locator(".model-status .load-error")).to_have_count(0)

    # Reading: another chat opens, whole.
    page.locator(".chat-link", has_text="beta bananas").click()
    expect(page.locator(".user-text")).to_have_text(["beta bananas"])
    expect(page.locator(REPLY)).to_contain_text(
        "Echo #1 from tiny-base + tiny-adapter: beta bananas")
    # Search, on the gateway's store.
    page.fill("input[aria-label='Search chats']", "apples")
    expect(page.locator(".chat-link")).to_have_text(["alpha apples"])
    page.fill("input[aria-label='Search chats']", "")
    expect(page.locator(".chat-link")).to_have_count(2)
    # Export.
    page.locator("button[aria-label='Export chat']").click()
    with page.expect_download() as download:
        page.get_by_role("menuitem", name="Markdown (.md)").click()
    assert "beta bananas" in Path(download.value.path()).read_text()
    # The model list on screen stays, and the message box takes text.
    open_picker(page)
    expect(page.locator(f"{MODELS} [role='option']")).to_have_count(2)
    page.keyboard.press("Escape")
    page.fill("#message", "typed while the box was away")
    expect(banner).to_be_visible()

    box_sshd.start_again()  # the same port and keys: the box is back
    expect(banner).to_have_count(0, timeout=30_000)  # by itself, no reload
    expect(pill).to_have_class(re.compile(r"state-connected"))
    expect(page.locator(".connection")).to_contain_text("Box reachable")
    page.keyboard.press("Enter")
    wait_reply_done(page, 2)
    expect(page.locator(LAST_REPLY)).to_contain_text("typed while the box was away")
    expect(page.locator(".lost-with-box")).to_have_count(0)  # loaded again
    assert page.js_errors == []


def test_two_boxes_on_a_phone_one_goes_down_and_its_doctor_names_it(
        make_page, make_scripted_gateway, box_sshd: TestSSHD, tmp_path: Path) -> None:
    """The .env's box (`main`, local) and a BOXES box `b` behind a real sshd."""
    boxes = tmp_path / "boxes.ini"
    boxes.write_text("[b]\n" + "".join(f"{k}={v}\n" for k, v in box_sshd.settings_env().items()))
    gateway = make_scripted_gateway(env={"BOXES": str(boxes), **FAST})
    page = make_page(viewport=PHONE)
    open_app(page, gateway.url)
    pills = page.locator(PILL)
    expect(pills).to_have_count(2)
    main, b = page.locator(f"{PILL}[data-box='main']"), page.locator(f"{PILL}[data-box='b']")
    expect(main).to_have_class(re.compile(r"state-connected"))
    expect(b).to_have_class(re.compile(r"state-connected"))
    expect(main.locator(".box-short")).to_have_text("main")
    expect(b.locator(".box-short")).to_have_text("b")
    no_sideways_scroll(page, PHONE["width"])

    # The picker groups the models by box.
    open_picker(page)
    groups = page.locator(f"{MODELS} .pick-box-group")
    expect(groups).to_have_count(2)
    assert groups.evaluate_all("gs => gs.map(g => g.dataset.box)") == ["main", "b"]
    expect(groups.nth(1).locator("[role='option'][data-model='b:default']")).to_have_count(1)
    expect(page.locator(".pick-box")).to_contain_text("2 boxes")
    page.keyboard.press("Escape")

    box_sshd.stop()
    banner = page.locator(BANNER)
    expect(banner).to_contain_text("Box b down: reading, search and export still work")
    expect(banner).to_contain_text("the other boxes still answer")
    expect(banner).to_contain_text("b: it cannot be reached")
    expect(b).to_have_class(re.compile(r"state-down"))
    expect(b.locator(".box-short")).to_have_text("b down")
    expect(main).to_have_class(re.compile(r"state-connected"))
    within(page, banner, PHONE["width"])
    no_sideways_scroll(page, PHONE["width"])

    # Its Run doctor checks that box: ?box=b, and the TCP check fails with its fix.
    link = banner.get_by_role("link", name="Run doctor")
    expect(link).to_have_attribute("href", "#/doctor/run/b")
    with page.expect_request(lambda r: "/api/doctor/stream" in r.url) as asked:
        link.click()
    assert "box=b" in asked.value.url
    expect(page.locator(f"{DOCTOR} select[aria-label='Box to check']")).to_have_value("b")
    expect(page.locator(f"{DOCTOR} .doctor-summary")).to_contain_text(SUMMARY, timeout=30_000)
    tcp = finding(page, "SSH", "TCP")
    expect(tcp).to_have_attribute("data-status", "fail")
    want = expected_finding(gateway, "SSH", "TCP", box="b")
    expect(tcp.locator(".doctor-fix pre")).to_have_text(want["fix"])
    expect(finding(page, "SSH", "login")).to_have_attribute("data-status", "skip")
    no_sideways_scroll(page, PHONE["width"])

    box_sshd.start_again()
    expect(banner).to_have_count(0, timeout=30_000)
    expect(b).to_have_class(re.compile(r"state-connected"))
    assert page.js_errors == []
