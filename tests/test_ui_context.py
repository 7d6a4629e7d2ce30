"""The context window on the page (issue 25, item 3), in Chromium over the scripted box,
whose model has a window of CUTOFF_LEN words: a meter under the message box says how full
the window was at the last reply; a chat that outgrows it is answered with its earliest
messages left out of the prompt, never silently: the reply says how many, and its stored
provenance keeps it. The same history on /v1 is refused, as OpenAI refuses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.gateway_process import GatewayProcess
from tests.test_ui import LAST_REPLY, current_chat, open_page, send, wait_reply_done
from tests.ui_rig import PHONE, fits_the_phone, module_gateway, on_shared

WINDOW = 60  # words; a reply is held to leave a quarter of it, so a prompt has 45
FIFTEEN = " ".join(["word"] * 14 + ["end"])  # a message of 15 words

shared_gateway_process = module_gateway("context", env={"CUTOFF_LEN": str(WINDOW)})


@pytest.fixture
def gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    yield from on_shared(shared_gateway_process)


def test_the_meter_fills_and_a_long_chat_says_what_its_prompt_left_out(page: Page,
                                                                       gateway) -> None:
    open_page(page, gateway)
    send(page, FIFTEEN)
    wait_reply_done(page, 1)
    meter = page.locator(".context-meter")
    expect(meter).to_contain_text(f"/ {WINDOW}")
    expect(page.locator(".left-out")).to_have_count(0)
    first = current_chat(page, gateway)["messages"][-1]["provenance"]
    used = first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    expect(meter.locator("meter")).to_have_attribute("value", str(used))

    # 15 + the reply (over 20 words) + 15 more: over the 45 a prompt may hold. The first
    # question and its reply are left out: the box saw one user message (the echo's #1).
    send(page, FIFTEEN)
    wait_reply_done(page, 2)
    expect(page.locator(LAST_REPLY)).to_contain_text("Echo #1 ")
    expect(page.locator(LAST_REPLY).locator(".left-out")).to_have_text(
        f"The first 2 messages were left out of this reply's prompt: the chat is longer than "
        f"the model's window ({WINDOW} tokens).")
    chat = current_chat(page, gateway)
    reply = chat["messages"][-1]
    assert reply["provenance"]["left_out"] == 2
    assert reply["provenance"]["usage"]["context_window"] == WINDOW
    exported = gateway.http.get(f"/api/chats/{chat['id']}/export?format=md").text
    assert "the first 2 messages were left out of this reply's prompt" in exported
    page.reload()  # stored, not only shown live
    expect(page.locator(LAST_REPLY).locator(".left-out")).to_contain_text("The first 2 messages")
    assert page.js_errors == []


def test_on_a_phone_the_meter_and_the_left_out_note_fit(make_page, gateway) -> None:
    """At 375 px: the meter under the message box and the note under a reply whose prompt
    left messages out are in view and within the screen's width (the note wraps)."""
    page = make_page(viewport=PHONE)
    open_page(page, gateway)
    for count in (1, 2):
        send(page, FIFTEEN)
        wait_reply_done(page, count)
    note = page.locator(LAST_REPLY).locator(".left-out")
    expect(note).to_contain_text("The first 2 messages were left out")
    meter = page.locator(".context-meter")
    expect(meter).to_contain_text(f"/ {WINDOW}")
    fits_the_phone(page, note, meter, meter.locator("meter"),
                   page.locator("button[aria-label='Send message']"))
    assert page.js_errors == []


def test_the_api_refuses_the_same_history(gateway) -> None:
    long = [{"role": "user", "content": FIFTEEN}, {"role": "assistant", "content": FIFTEEN},
            {"role": "user", "content": FIFTEEN}, {"role": "assistant", "content": FIFTEEN},
            {"role": "user", "content": FIFTEEN}]
    answer = gateway.http.post("/v1/chat/completions", json={"model": "default",
                                                              "messages": long})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "context_length_exceeded"


def test_each_compare_column_says_what_its_prompt_left_out(page: Page, gateway) -> None:
    """A compare's rows are cut like a chat (each its own count, protocol 6's fit for a
    batch); each column says so, live and stored."""
    chat: dict = {}
    for _ in range(2):
        _, events = gateway.chat_at("/api/compare", {"message": FIFTEEN,
                                                     "models": ["default", "base"], **chat})
        head = events[0][1]
        chat = {"chat_id": head["chat_id"]}
        ends = [data for name, data in events if name == "done"]
        vote = gateway.http.post(f"/api/chats/{head['chat_id']}/votes",
                                 json={"compare_id": head["compare_id"], "winner": "1"})
        assert vote.status_code == 200, vote.text
    assert [end.get("left_out") for end in ends] == [2, 2], ends
    page.goto(f"{gateway.url}/#/chat/{chat['chat_id']}")
    notes = page.locator(".cmp-cell .left-out")
    expect(notes).to_have_count(2)
    expect(notes.first).to_contain_text("The first 2 messages were left out")
    assert page.js_errors == []
