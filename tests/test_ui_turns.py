"""The page through a turn's life, as a new user met it in their first hour: rates that mean
something, the box's notices kept, a reply that outlives the page (a reload mid-reply or
before the first token, a dropped connection, a closed tab: only Stop stops it), a refused
host key shown once, a failed send that keeps its text, and Send while the gateway is away."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.gateway_process import GatewayProcess
from tests.rig.cut_proxy import CutProxy
from tests.rig.fake_wrappers.scripted_wrapper import NOTICE_MESSAGE
from tests.rig.sshd import fingerprint, keygen
from tests.test_streams import long_reply, wait_for
from tests.test_ui import (
    LAST_REPLY,
    REPLY,
    SEND,
    STOP,
    current_chat,
    open_page,
    send,
    wait_reply_done,
)
from tests.ui_rig import (
    FAST_PACE_S,
    errors_but_network,
    module_gateway,
    on_shared,
    record_streamed,
    set_pace,
    streamed,
)

LIVE = f"{REPLY}[aria-busy='true']"  # the reply streaming on the page
RECONNECTING = f"{LAST_REPLY} >> .reconnecting"


# Long replies paced 30 ms a chunk (400 chunks: about 12 s), for the tests to reload, cut or
# close the page while one streams; each lets the rest come at once when it may.
shared_gateway_process = module_gateway("ui-turns", delay_s=0.03)


@pytest.fixture
def gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    """The module's scripted gateway (tests/ui_rig.py shared_scripted_gateway), for tests
    that only look at chats of their own."""
    yield from on_shared(shared_gateway_process)


def last(page: Page, selector: str):
    """`selector` inside the last reply on the page."""
    return page.locator(LAST_REPLY).locator(selector)


def test_rates_are_shown_only_where_they_mean_something(page: Page, gateway) -> None:
    scripted_gateway = gateway
    one_token = scripted_gateway.http.post("/api/chats", json={
        "title": "one token", "params": {"max_new_tokens": 1}}).json()
    page.goto(f"{scripted_gateway.url}/#/chat/{one_token['id']}")
    send(page, "hello")
    wait_reply_done(page, 1)
    # "840 ms to first token", or "1.1 s to first token" on a loaded machine (a first load)
    expect(last(page, ".reply-meta")).to_contain_text(re.compile(r"\d( ms| s) to first token"))
    expect(last(page, ".reply-meta")).not_to_contain_text("/s")  # one token has no rate (was 8333)

    page.click("text=+ New chat")
    send(page, "show code")
    wait_reply_done(page, 1)
    expect(last(page, ".reply-meta")).to_contain_text("tok/s")
    rate = float(re.search(r"([\d.]+) tok/s", last(page, ".reply-meta").inner_text())[1])
    box = current_chat(page, scripted_gateway)["messages"][-1]["provenance"]["box_timing"]
    assert rate == round(box["tokens_per_s"], 1) and 0 < rate < 1000  # 49 chunks, 30 ms apart


def test_what_is_typed_goes_to_the_chat_on_screen_with_its_own_settings(
        page: Page, gateway) -> None:
    """Typed and sent while the chat just chosen is still being fetched: the message goes
    with that chat's own model and parameters, never with the settings of the chat shown
    before it. The page keeps the chat it fetched only while it is the open one, so "+ New
    chat" cannot lend it either (a fresh-clone run once sent a new chat's first message with
    the previous chat's max_new_tokens=1, typed before the old chat was let go)."""
    scripted_gateway = gateway
    http = scripted_gateway.http
    short = http.post("/api/chats", json={"title": "short", "model": "base",
                                          "params": {"max_new_tokens": 1}}).json()
    other = http.post("/api/chats", json={"title": "other", "model": "default"}).json()
    page.goto(f"{scripted_gateway.url}/#/chat/{short['id']}")
    expect(page.locator("#message")).to_be_visible()

    held: list = []  # the chat's fetch, held until the message is sent; later ones go through
    page.route(f"**/api/chats/{other['id']}",
               lambda route: held.append(route) if held is not None else route.continue_())
    # Its title whole: the module's other chats are listed too ("another long one").
    page.locator(".chat-link", has_text=re.compile(r"^other$")).click()
    send(page, "show code")
    waiting, held = held, None
    for route in waiting:
        route.continue_()
    wait_reply_done(page, 1)
    reply = http.get(f"/api/chats/{other['id']}").json()["messages"][-1]
    assert reply["provenance"]["model"] == "default"
    assert "max_new_tokens" not in reply["provenance"].get("params", {})
    assert len(http.get(f"/api/chats/{short['id']}").json()["messages"]) == 0


def test_the_box_notices_about_a_reply_stay_with_it(page: Page, make_scripted_gateway) -> None:
    gateway = make_scripted_gateway(mode="cli")
    open_page(page, gateway)
    send(page, "show the notice")
    notice = last(page, ".notice.info")
    expect(notice).to_have_text(NOTICE_MESSAGE)  # while it streams
    wait_reply_done(page, 1)
    expect(notice).to_have_text(NOTICE_MESSAGE)  # once stored
    page.reload()
    expect(last(page, ".notice.info")).to_have_text(NOTICE_MESSAGE)
    assert page.js_errors == []


def replies(chat: dict) -> list[dict]:
    return [m for m in chat["messages"] if m["role"] == "assistant"]


def shown_text(page: Page) -> str:
    """The last reply's answer as the page shows it (whitespace at its ends aside)."""
    return page.locator(LAST_REPLY).locator(".reply > .markdown").text_content().strip()


def assert_streamed_within(page: Page, stored: dict, *, growing: bool) -> list[str]:
    """Every text the `stored` reply showed while streaming since the page loaded was a
    beginning of its stored text: a chunk shown twice or missed would break that (exact
    strings). `growing`: each also began the next (no reload in between: none started over)."""
    seen = streamed(page, stored["id"])
    assert seen, "the reply never showed as streaming"
    for text in seen:
        assert stored["content"].startswith(text), f"shown, but not in the stored reply: {text!r}"
    if growing:
        for before, after in itertools.pairwise(seen):
            assert after.startswith(before), f"went back from {before!r} to {after!r}"
    return seen


# Animation frames held in the page's own world (Playwright's checks run in another), so a
# test can choose the frame at which the page draws what it has already been told.
HOLD_FRAMES = """() => {
    const frame = window.requestAnimationFrame.bind(window);
    window.heldFrames = [];
    window.requestAnimationFrame = (draw) => {
        if (window.heldFrames === null) return frame(draw);
        window.heldFrames.push(draw);
        return 0;
    };
    window.releaseFrames = () => {
        const held = window.heldFrames;
        window.heldFrames = null;
        window.requestAnimationFrame = frame;
        held.forEach((draw) => frame(draw));
    };
}"""


def test_send_comes_back_only_with_the_chat_reloaded_after_a_reply(
        page: Page, gateway) -> None:
    """A reply's end is drawn once, with its chat reloaded. A frame queued before the end
    once drew it early: Send came back while the reload was on its way, a message sent then
    had its reply wiped from the screen when the reload landed (the ended turn cleared
    whatever turn was shown), and the page showed a bare "generating…" (a fresh-clone CI
    run)."""
    open_page(page, gateway)
    send(page, "Tell me a long story")
    expect(page.locator(LAST_REPLY)).to_contain_text("sentence 3")
    chat_id = current_chat(page, gateway)["id"]

    held: list = []  # the reload of the chat once the reply has ended
    page.route(f"**/api/chats/{chat_id}",
               lambda route: held.append(route) if held is not None else route.continue_())
    page.evaluate(HOLD_FRAMES)
    # A delta waits to be drawn. Polled on a timer: Playwright's default polls at animation
    # frames, with the requestAnimationFrame of the page's world when it first looks there,
    # which can be the one just replaced, and then its next look is held with the frames.
    page.wait_for_function("() => window.heldFrames.length > 0", polling=50)
    with page.expect_request(lambda r: r.url.endswith(f"/api/chats/{chat_id}")):
        page.keyboard.press("Escape")  # the reply ends; its chat is being reloaded
    page.evaluate("() => window.releaseFrames()")
    page.evaluate("() => new Promise((drawn) => requestAnimationFrame(() => "
                  "requestAnimationFrame(() => drawn())))")  # the held frame has run
    expect(page.locator(STOP)).to_be_visible()
    expect(page.locator(SEND)).to_have_count(0)

    waiting, held = held, None
    for route in waiting:
        route.continue_()
    wait_reply_done(page, 1)
    expect(page.locator(LAST_REPLY).locator(".notice.stopped")).to_have_text("Stopped")
    send(page, "Another long one")
    expect(page.locator(LAST_REPLY)).to_contain_text("sentence 3")
    page.keyboard.press("Escape")
    wait_reply_done(page, 2)
    stored = current_chat(page, gateway)["messages"]
    assert [m["status"] for m in stored if m["role"] == "assistant"] == ["stopped", "stopped"]
    assert page.js_errors == []


def test_a_reload_mid_reply_follows_it_live_to_its_end_and_stop_still_works(
        page: Page, gateway, reliability) -> None:
    record_streamed(page)  # the gateway paces 400 chunks over about 12 s
    open_page(page, gateway)
    send(page, "tell me a long story")
    expect(page.locator(LIVE)).to_contain_text("sentence 3")
    page.reload()  # the reply goes on on the box, and the page follows it again
    expect(page.locator(LIVE)).to_have_count(1)
    expect(page.locator(STOP)).to_be_visible()
    set_pace(gateway, FAST_PACE_S)  # followed again: the rest need not take seconds
    wait_reply_done(page, 1)
    chat = current_chat(page, gateway)
    assert len(replies(chat)) == 1  # stored once: the same reply, not a second one
    stored = replies(chat)[0]
    assert stored["status"] == "complete"
    assert stored["content"] == long_reply()  # the box's own text, nothing lost or doubled
    assert shown_text(page) == stored["content"].strip()
    # Live: after the reload the page showed the reply growing, render after render, and
    # only ever a beginning of what is stored.
    live_texts = assert_streamed_within(page, stored, growing=False)
    assert len(live_texts) >= 3, live_texts
    expect(page.locator(LAST_REPLY).locator(".notice")).to_have_count(0)

    # Stop works on a reply the page picked up after a reload.
    set_pace(gateway, None)
    send(page, "and another long one")
    expect(page.locator(LIVE)).to_contain_text("sentence 3")
    page.reload()
    expect(page.locator(LIVE)).to_contain_text("sentence 4")
    page.click(STOP)
    wait_reply_done(page, 2)
    expect(page.locator(LAST_REPLY).locator(".notice.stopped")).to_have_text("Stopped")
    chat = current_chat(page, gateway)
    assert len(replies(chat)) == 2
    stopped = replies(chat)[-1]
    assert stopped["status"] == "stopped"
    assert 0 < len(stopped["content"]) < len(long_reply())
    assert long_reply().startswith(stopped["content"])
    assert shown_text(page) == stopped["content"].strip()
    assert_streamed_within(page, stopped, growing=False)
    assert page.js_errors == []
    reliability.record(
        "streams", "The page reloaded mid-reply",
        f"the page picked the reply up again and showed it live to its end ({stored['status']}, "
        f"{len(stored['content'])} characters, equal to the box's text and to the stored "
        f"reply, stored once); Stop after a reload stopped the next reply "
        f"({stopped['status']}, what was shown is what was stored)")


def test_a_reload_before_the_first_token_shows_the_reply_arriving(
        page: Page, make_scripted_gateway, reliability) -> None:
    gateway = make_scripted_gateway(load_s=4)  # the first token is seconds away
    open_page(page, gateway)
    send(page, "hello")
    expect(page).to_have_url(re.compile(r"#/chat/\w+$"))  # the gateway stored the message
    expect(page.locator(LIVE)).to_have_count(1)
    page.reload()  # which no longer stops the reply
    waiting = page.locator(LIVE)
    expect(waiting.locator(".typing")).to_be_visible()  # still loading: waiting, with Stop
    expect(page.locator(STOP)).to_be_visible()
    wait_reply_done(page, 1)
    expect(page.locator(LAST_REPLY)).to_contain_text("Echo #1")
    stored = replies(current_chat(page, gateway))
    assert [m["status"] for m in stored] == ["complete"]
    assert shown_text(page) == stored[0]["content"].strip()
    expect(page.locator(LAST_REPLY).locator(".notice")).to_have_count(0)
    assert page.js_errors == []
    reliability.record(
        "streams", "The page reloaded before the first token (the model still loading)",
        f"the reply showed as waiting, with Stop, then arrived: {stored[0]['status']}, "
        "what was shown is what was stored")


def test_on_a_phone_a_dropped_connection_shows_reconnecting_and_stop_in_view(
        make_page, gateway) -> None:
    """At 375 px: the Reconnecting… note and Stop fit the screen, nothing scrolls sideways,
    and the reply completes as stored once the link is back."""
    page = make_page(viewport={"width": 375, "height": 740})
    with CutProxy(gateway.port) as proxy:
        page.goto(proxy.url)
        expect(page.locator(".connection")).to_contain_text("Box")
        send(page, "tell me a long story")
        expect(page.locator(LIVE)).to_contain_text("sentence 3")
        proxy.refuse()
        assert proxy.cut() >= 1
        note = page.locator(RECONNECTING)
        expect(note).to_have_text("Reconnecting…")
        expect(page.locator(STOP)).to_be_visible()
        for shown in (note, page.locator(STOP)):
            box = shown.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways: {width}px"
        proxy.allow()
        expect(note).to_have_count(0)
        set_pace(gateway, FAST_PACE_S)  # back on the link: the rest at once
        wait_reply_done(page, 1)
        stored = replies(current_chat(page, gateway))
        assert [m["content"] for m in stored] == [long_reply()]
        assert shown_text(page) == long_reply().strip()
        assert errors_but_network(page) == []


def test_a_dropped_connection_reattaches_with_nothing_lost_or_doubled(
        page: Page, gateway, reliability) -> None:
    tries = []  # the page's reattaches: GET /api/chat/{turn_id}/stream
    page.on("request", lambda request: tries.append(request) if "/stream" in request.url else None)
    with CutProxy(gateway.port) as proxy:
        record_streamed(page)
        page.goto(proxy.url)  # the page reaches the gateway through a link the test can cut
        expect(page.locator(".connection")).to_contain_text("Box")
        send(page, "tell me a long story")
        expect(page.locator(LIVE)).to_contain_text("sentence 3")
        proxy.refuse()
        assert proxy.cut() >= 1  # the stream's socket reset under the page
        expect(page.locator(RECONNECTING)).to_have_text("Reconnecting…")
        expect(page.locator(LIVE)).to_contain_text("sentence 2")  # what arrived stays
        expect(page.locator(STOP)).to_be_visible()
        held = shown_text(page)
        # Nobody follows it now, and the box goes on: the stored reply grows past the page's.
        chat_id = re.search(r"#/chat/(\w+)$", page.url)[1]
        wait_for(lambda: len(replies(gateway.http.get(f"/api/chats/{chat_id}").json())[0][
            "content"]) > len(held) + 50, "the reply went on while the page was cut off")
        proxy.allow()  # the next try gets through (the page retries by itself)
        expect(page.locator(RECONNECTING)).to_have_count(0)
        set_pace(gateway, FAST_PACE_S)  # reattached: the rest streams on, at once
        wait_reply_done(page, 1)
        stored = replies(current_chat(page, gateway))
        assert len(stored) == 1 and stored[0]["status"] == "complete"
        assert stored[0]["content"] == long_reply()
        assert shown_text(page) == stored[0]["content"].strip()
        seen = assert_streamed_within(page, stored[0], growing=True)
        assert any(len(text) > len(held) for text in seen)  # it streamed on after the reattach
        # Every try asked for what came after the last event the page had, not from the start.
        asked = [request.headers.get("last-event-id") for request in tries]
        assert asked and all(i is not None and int(i) > 1 for i in asked), asked
        expect(page.locator(LAST_REPLY).locator(".notice")).to_have_count(0)

        # Stop pressed while the page has no connection: sent as soon as it has one again.
        set_pace(gateway, None)
        send(page, "another long one")
        expect(page.locator(LIVE)).to_contain_text("sentence 3")
        page.context.set_offline(True)  # the browser knows it is offline, and it is
        proxy.cut()
        expect(page.locator(RECONNECTING)).to_have_text("Reconnecting…")
        page.click(STOP)
        page.context.set_offline(False)  # `online`: the page reattaches at once, then stops
        wait_reply_done(page, 2)
        expect(page.locator(LAST_REPLY).locator(".notice.stopped")).to_have_text("Stopped")
        stopped = replies(current_chat(page, gateway))[-1]
        assert stopped["status"] == "stopped" and len(stopped["content"]) < len(long_reply())
        assert shown_text(page) == stopped["content"].strip()
        assert_streamed_within(page, stopped, growing=True)
        assert errors_but_network(page) == []
    reliability.record(
        "streams", "The page's connection dropped mid-reply (its socket reset; new "
        "connections refused for a while)",
        f"the reply showed Reconnecting… and kept what had arrived while the box went on; the "
        f"page reattached by itself from the last event it had: {stored[0]['status']}, every "
        f"text shown a beginning of the stored reply, which equals the box's; Stop pressed "
        f"while offline was sent on reattaching ({stopped['status']})")


def test_a_connection_that_dies_silently_is_given_up_and_reattached(
        page: Page, gateway, reliability) -> None:
    """No reset, no close: the page's connections stop carrying anything (a laptop that
    slept, a NAT that forgot them). The page hears not even a keep-alive, gives the stream
    up and reattaches on a new connection, from the last event it had."""
    tries = []
    page.on("request", lambda request: tries.append(request) if "/stream" in request.url else None)
    with CutProxy(gateway.port) as proxy:
        record_streamed(page)
        page.goto(proxy.url)
        expect(page.locator(".connection")).to_contain_text("Box")
        send(page, "tell me a long story")
        expect(page.locator(LIVE)).to_contain_text("sentence 3")
        assert proxy.freeze() >= 1
        wait_reply_done(page, 1, timeout=60_000)
        stored = replies(current_chat(page, gateway))
        assert len(stored) == 1 and stored[0]["status"] == "complete"
        assert stored[0]["content"] == long_reply()
        assert shown_text(page) == stored[0]["content"].strip()
        assert_streamed_within(page, stored[0], growing=True)
        asked = [request.headers.get("last-event-id") for request in tries]
        assert asked and all(i is not None and int(i) > 1 for i in asked), asked
        assert errors_but_network(page) == []
    reliability.record(
        "streams", "The page's connections went silent mid-reply, never closed (a laptop "
        "that slept, a NAT that forgot them)",
        f"with not even a keep-alive coming, the page gave the stream up and reattached on a "
        f"new connection from the last event it had: {stored[0]['status']}, every text shown "
        "a beginning of the stored reply, which equals the box's")


def test_closing_the_tab_leaves_the_reply_running_to_its_end(
        page: Page, gateway, reliability) -> None:
    open_page(page, gateway)
    send(page, "tell me a long story")
    expect(page.locator(LIVE)).to_contain_text("sentence 3")
    chat_url = page.url
    chat_id = re.search(r"#/chat/(\w+)$", chat_url)[1]
    context = page.context
    page.close()  # nobody watches any more: only Stop stops a reply
    set_pace(gateway, FAST_PACE_S)  # closed mid-reply: the rest need not take seconds

    def ended() -> dict | None:
        reply = replies(gateway.http.get(f"/api/chats/{chat_id}").json())[0]
        return reply if reply["status"] != "streaming" else None

    stored = wait_for(ended, "the reply ended with no page open", timeout_s=60)
    assert stored["status"] == "complete" and stored["content"] == long_reply()
    again = context.new_page()
    again.goto(chat_url)
    expect(again.locator(REPLY)).to_have_count(1)
    expect(again.locator(f"{REPLY}.status-complete")).to_have_count(1)
    expect(again.locator(SEND)).to_be_visible()
    assert again.locator(".reply > .markdown").text_content().strip() == stored["content"].strip()
    assert len(replies(gateway.http.get(f"/api/chats/{chat_id}").json())) == 1
    reliability.record(
        "streams", "The tab was closed mid-reply, and the chat opened again later",
        f"the box finished the reply with no page open: {stored['status']}, equal to the "
        "box's text, stored once; the chat opened again shows it whole")


def test_a_refused_host_key_is_one_error_once_with_one_action(page: Page, sshd, tmp_path) -> None:
    """Over the real test sshd, with a known_hosts that holds another key for it."""
    key_type, key = keygen(tmp_path / "not-the-box").split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    dotenv = {**sshd.settings_env(), "SSH_KNOWN_HOSTS": str(wrong), "BASE_MODEL_PATH": "/m",
              "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'lfgate.db'}",
              "LFGATE_DATA_DIR": str(tmp_path / "data")}
    gateway = GatewayProcess({}, tmp_path, dotenv=dotenv)
    try:
        open_page(page, gateway)
        send(page, "hello over a box I should not trust")
        wait_reply_done(page, 1)
        error = page.locator(f"{REPLY} .notice.error")
        expect(error).to_contain_text("host_key_rejected")
        real = fingerprint(sshd.host_key.with_suffix(".pub"))
        expect(error).to_contain_text(real)
        # The model's box was never reached: once health says so (its next poll), the page
        # notes it beside the failed reply, without the box's reason again.
        expect(page.locator(".lost-with-box")).to_contain_text("has not been reached")
        assert page.locator("body").inner_text().count(real) == 1  # once on the page
        expect(error.locator("code", has_text="ssh-keyscan")).to_have_count(1)  # rendered
        actions = page.locator(f"{REPLY} .msg-actions button")
        expect(actions.filter(has_text="Retry")).to_have_count(1)
        expect(page.locator(f"{REPLY} button[aria-label='Regenerate reply']")).to_have_count(0)
        header = page.locator("header.topbar").bounding_box()
        assert header is not None and header["height"] < 60, header  # one row, not wrapped
        expect(page.locator(".connection")).to_contain_text("Box down")
        # Nothing came back, so the text is back in the composer too.
        expect(page.locator("#message")).to_have_value("hello over a box I should not trust")
        assert page.js_errors == []
    finally:
        gateway.stop()


def test_a_send_that_never_reached_the_gateway_keeps_its_text(page: Page,
                                                             gateway) -> None:
    open_page(page, gateway)
    page.route("**/api/chat", lambda route: route.abort("connectionreset"))
    send(page, "words I typed with care")
    expect(page.locator(".banner")).to_contain_text("cannot be reached")
    expect(page.locator("#message")).to_have_value("words I typed with care")
    page.unroute("**/api/chat")
    page.click(SEND)
    wait_reply_done(page, 1)
    expect(page.locator(LAST_REPLY)).to_contain_text("Echo #1")
    expect(page.locator("#message")).to_have_value("")


def test_send_waits_while_the_gateway_is_away_and_comes_back_with_it(
        page: Page, tmp_path, make_scripted_gateway) -> None:
    folder = tmp_path / "away"
    gateway = make_scripted_gateway(folder)
    open_page(page, gateway)
    page.fill("#message", "typed while it was down")
    expect(page.locator(SEND)).to_be_enabled()
    gateway.stop()
    expect(page.locator(".connection")).to_contain_text("reconnecting")
    expect(page.locator(SEND)).to_be_disabled()
    expect(page.locator(".composer")).to_contain_text("gateway cannot be reached")
    page.keyboard.press("Enter")  # Enter does not send into nothing either
    expect(page.locator("#message")).to_have_value("typed while it was down")
    make_scripted_gateway(folder, port=gateway.port)
    expect(page.locator(SEND)).to_be_enabled()  # no reload
    page.click(SEND)
    wait_reply_done(page, 1)
    expect(page.locator(LAST_REPLY)).to_contain_text("typed while it was down")
