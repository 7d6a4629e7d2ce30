"""Tools on the page (issue 25, item 6), in Chromium over the scripted box: a chat's tools
are a JSON list in its settings (as LlamaBoard's chat tab takes them); a reply that calls one
shows the call as a block; the next message goes as the tool's result, shown as such, and the
model answers from it (the scripted box says it got the call and the result as its
template's function and observation turns)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.gateway_process import GatewayProcess
from tests.rig.fake_wrappers.scripted_wrapper import TOOL_LEAD
from tests.test_ui import LAST_REPLY, REPLY, current_chat, open_page, send, wait_reply_done
from tests.ui_rig import PHONE, fits_the_phone, module_gateway, on_shared

WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}

# The tests only add chats of their own (a new chat's tools are its draft's, in the page).
shared_gateway_process = module_gateway("tools")


@pytest.fixture
def gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    yield from on_shared(shared_gateway_process)


def ask_the_weather(page: Page) -> Locator:
    """Ask the weather in Paris of a chat that offers get_weather: the reply's call block,
    once it shows the call and "Tool's result" is ticked for the next message."""
    send(page, "What is the weather in Paris?")
    wait_reply_done(page, 1)
    call = page.locator(LAST_REPLY).locator(".tool-calls")
    expect(call.locator("code")).to_have_text("get_weather")
    expect(call.locator("pre")).to_contain_text('"city": "Paris"')
    expect(page.get_by_label("Tool's result")).to_be_checked()
    return call


def test_a_chat_with_tools_shows_the_call_and_sends_the_tools_result(page: Page,
                                                                     gateway) -> None:
    open_page(page, gateway)
    page.click("text=Parameters")
    drawer = page.locator("[role='dialog'][aria-label='Generation settings']")
    tools = drawer.get_by_label("Tools")
    tools.fill("[{\"description\": \"no name\"}]")
    drawer.locator("text=Save").click()
    expect(drawer.locator(".notice.error")).to_contain_text('Tools: function 1 needs a "name"')
    tools.fill(json.dumps([{"type": "function", "function": WEATHER}]))  # OpenAI's shape too
    drawer.locator("text=Save").click()
    expect(drawer).to_have_count(0)

    ask_the_weather(page)
    expect(page.locator(LAST_REPLY).locator(".reply")).to_contain_text(TOOL_LEAD.strip())

    send(page, '{"temperature": 21}')
    wait_reply_done(page, 2)
    expect(page.locator(".tool-result")).to_contain_text('{"temperature": 21}')
    expect(page.locator(LAST_REPLY)).to_contain_text('The tool said: {"temperature": 21}')
    expect(page.get_by_label("Tool's result")).to_have_count(0)  # no call to answer now
    chat = current_chat(page, gateway)
    assert chat["params"]["tools"] == [WEATHER]
    assert [(m["provenance"] or {}).get("tool_result") for m in chat["messages"]
            if m["role"] == "user"] == [None, True]
    assert page.locator(REPLY).count() == 2
    assert page.js_errors == []


def test_on_a_phone_the_call_its_arguments_and_the_tools_result_toggle_fit(make_page,
                                                                          gateway) -> None:
    """At 375 px: the call block, its arguments and the "Tool's result" toggle under the
    message box are in view and within the screen's width."""
    page = make_page(viewport=PHONE)
    open_page(page, gateway)
    page.click("button[aria-label='Parameters']")  # an icon alone at this width
    drawer = page.locator("[role='dialog'][aria-label='Generation settings']")
    drawer.get_by_label("Tools").fill(json.dumps([WEATHER]))
    drawer.locator("text=Save").click()
    expect(drawer).to_have_count(0)

    call = ask_the_weather(page)
    fits_the_phone(page, call, call.locator("pre"), page.locator(".tool-result-toggle"),
                   page.locator(".context-meter"),
                   page.locator("button[aria-label='Send message']"))
    assert page.js_errors == []
