"""A /v1 conversation kept with STORE_API_CHATS, as the page shows it: in the chat list with
an API tag, readable and continued like any chat (a real browser, the scripted box)."""

from __future__ import annotations

import openai
from playwright.sync_api import Page, expect

from tests.test_ui import LAST_REPLY, open_page, send, wait_reply_done

expect.set_options(timeout=20_000)


def test_an_api_conversation_is_listed_as_one_and_reads_like_any_chat(make_scripted_gateway,
                                                                      page: Page):
    gateway = make_scripted_gateway(env={"STORE_API_CHATS": "true"})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-any", max_retries=0)
    reply = client.chat.completions.create(model="default", messages=[
        {"role": "user", "content": "question from my eval script"}])
    answer = reply.choices[0].message.content
    assert answer.endswith("question from my eval script")

    open_page(page, gateway)
    send(page, "and one from the page")
    wait_reply_done(page, 1)
    api_item = page.locator(".chat-item", has_text="question from my eval script")
    expect(api_item.locator(".source-tag")).to_have_text("API")
    expect(page.locator(".chat-item", has_text="and one from the page")
           .locator(".source-tag")).to_have_count(0)

    api_item.locator(".chat-link").click()
    expect(page.locator(LAST_REPLY)).to_contain_text(answer)
    send(page, "a follow-up typed in the page")  # an API chat continues like any other
    wait_reply_done(page, 2)
    expect(page.locator(LAST_REPLY)).to_contain_text("Echo #2")
    assert page.js_errors == []
