"""The page through a turn's life, as a new user met it in their first hour: rates that mean
something, the box's notices kept, a reload before the first token, a refused host key shown
once, a failed send that keeps its text, and Send while the gateway is away."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.gateway_process import GatewayProcess
from tests.rig.fake_wrappers.scripted_wrapper import NOTICE_MESSAGE
from tests.rig.sshd import fingerprint, keygen
from tests.test_ui import LAST_REPLY, REPLY, SEND, current_chat, open_page, send, wait_reply_done


def last(page: Page, selector: str):
    """`selector` inside the last reply on the page."""
    return page.locator(LAST_REPLY).locator(selector)


def test_rates_are_shown_only_where_they_mean_something(page: Page, scripted_gateway) -> None:
    one_token = scripted_gateway.http.post("/api/chats", json={
        "title": "one token", "params": {"max_new_tokens": 1}}).json()
    page.goto(f"{scripted_gateway.url}/#/chat/{one_token['id']}")
    send(page, "hello")
    wait_reply_done(page, 1)
    expect(last(page, ".reply-meta")).to_contain_text("ms to first token")
    expect(last(page, ".reply-meta")).not_to_contain_text("/s")  # one token has no rate (was 8333)

    page.click("text=+ New chat")
    send(page, "show code")
    wait_reply_done(page, 1)
    expect(last(page, ".reply-meta")).to_contain_text("tok/s")
    rate = float(re.search(r"([\d.]+) tok/s", last(page, ".reply-meta").inner_text())[1])
    box = current_chat(page, scripted_gateway)["messages"][-1]["provenance"]["box_timing"]
    assert rate == round(box["tokens_per_s"], 1) and 0 < rate < 1000  # 49 chunks, 20 ms apart


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


def test_a_reload_before_the_first_token_shows_the_reply_stopped(
        page: Page, make_scripted_gateway) -> None:
    gateway = make_scripted_gateway(load_s=4)  # the first token is seconds away
    open_page(page, gateway)
    send(page, "hello")
    expect(page).to_have_url(re.compile(r"#/chat/\w+$"))  # the gateway stored the message
    expect(page.locator(f"{REPLY}[aria-busy='true']")).to_have_count(1)
    page.reload()  # which stops the reply, as documented
    reply = page.locator(LAST_REPLY)
    expect(reply.locator(".notice.stopped")).to_have_text("Stopped")  # no second reload
    assert current_chat(page, gateway)["messages"][-1]["status"] == "stopped"
    expect(page.locator(SEND)).to_be_visible()


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
                                                             scripted_gateway) -> None:
    open_page(page, scripted_gateway)
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
