"""The page's login when the gateway has a GATEWAY_TOKEN (issue 17, security), in Chromium
against the real `lfgate serve` on the scripted box: the form instead of the app, a wrong
token said so, the right one opening the app (and a chat working over the cookie), a reload
staying logged in, Log out back to the form, and failed logins limited with their wait."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.test_ui import REPLY, send, wait_reply_done

expect.set_options(timeout=20_000)

TOKEN = "ui-login-token-0f3b9c2e"
FIELD = "Gateway token"
# What Chromium logs for every 401/429 the page is answered (not errors of the page).
REFUSED = re.compile(r"Failed to load resource: the server responded with a status of (401|429)")


def page_errors(page: Page) -> list[str]:
    return [error for error in page.js_errors if not REFUSED.search(error)]


def log_in(page: Page, token: str) -> None:
    """Type the token and submit with the keyboard alone (Tab to the button, Enter), and wait
    for the gateway's answer: the form's message may be the same as the last attempt's."""
    page.get_by_label(FIELD).fill(token)
    button = page.get_by_role("button", name="Log in")
    expect(button).to_be_enabled()  # not still busy with the last attempt
    page.keyboard.press("Tab")
    expect(button).to_be_focused()
    with page.expect_response(lambda response: response.url.endswith("/api/login")):
        page.keyboard.press("Enter")


def test_login_opens_the_app_a_reload_stays_and_log_out_returns(page: Page,
                                                                 make_scripted_gateway) -> None:
    gateway = make_scripted_gateway(env={"GATEWAY_TOKEN": TOKEN})
    page.goto(gateway.url)
    field = page.get_by_label(FIELD)
    expect(field).to_be_visible()
    expect(field).to_be_focused()
    assert field.get_attribute("type") == "password"
    expect(page.locator("#message")).to_have_count(0)  # not the app behind it

    log_in(page, "not-the-token")
    expect(page.get_by_role("alert")).to_contain_text("not this gateway's token")
    expect(field).to_be_visible()
    assert page.context.cookies() == []

    field.fill(TOKEN)
    page.keyboard.press("Enter")  # Enter in the field submits too
    expect(page.locator(".connection")).to_contain_text("Box")
    expect(field).to_have_count(0)
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        "lfgate_session", True, "Strict", "/")
    assert TOKEN not in cookie["value"]
    assert "lfgate_session" not in page.evaluate("document.cookie")  # HttpOnly
    send(page, "hello through the cookie")
    wait_reply_done(page, 1)
    expect(page.locator(REPLY)).to_contain_text("Echo #1")
    expect(page).to_have_url(re.compile(r"#/chat/[\w-]+$"))

    page.reload()  # the cookie keeps the browser logged in, on the same chat
    expect(page.locator(".connection")).to_contain_text("Box")
    expect(page.locator(REPLY)).to_contain_text("Echo #1")
    expect(page.get_by_label(FIELD)).to_have_count(0)

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label(FIELD)).to_be_visible()
    expect(page.locator("#message")).to_have_count(0)
    assert page.context.cookies() == []
    page.reload()
    expect(page.get_by_label(FIELD)).to_be_visible()

    # Five wrong tokens in a row, then even the right one waits, and the form says how long.
    for _ in range(5):
        log_in(page, "guess")
        expect(page.get_by_role("alert")).to_contain_text("not this gateway's token")
    log_in(page, TOKEN)
    expect(page.get_by_role("alert")).to_contain_text(
        re.compile(r"too many failed logins from this address: try again in \d+ s"))
    expect(page.get_by_label(FIELD)).to_be_visible()
    assert page.context.cookies() == []
    assert page_errors(page) == []


def test_no_token_no_login_and_no_log_out(page: Page, scripted_gateway) -> None:
    page.goto(scripted_gateway.url)
    expect(page.locator(".connection")).to_contain_text("Box")
    expect(page.locator("nav[aria-label='Chats']")).to_contain_text("Import a chat")
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    expect(page.get_by_label(FIELD)).to_have_count(0)


def test_the_login_form_in_the_dark_on_a_phone(make_page, make_scripted_gateway) -> None:
    gateway = make_scripted_gateway(env={"GATEWAY_TOKEN": TOKEN})
    page = make_page(viewport={"width": 375, "height": 740}, color_scheme="dark")
    page.goto(gateway.url)
    expect(page.get_by_label(FIELD)).to_be_visible()
    card = page.locator(".login-card")
    assert card.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(28, 31, 38)"
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    log_in(page, TOKEN)
    expect(page.locator("#message")).to_be_visible()
    assert page_errors(page) == []
