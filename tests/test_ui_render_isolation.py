"""Each message renders on its own (issue 24 finding 8): Markdown that overflows marked's or
KaTeX's stack, that would take seconds to render, or any other message that throws while
rendering is shown as plain text with a note, and never hides the other messages.

Before: about 3,000 `>` at a line start (a model stuck in a loop writes that) or deeply nested
braces in `$$…$$` threw "Maximum call stack size exceeded" out of the page's render, and the
reply and every message after it were gone; a 1,000-level nested list took 7.4 s to render.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Route, expect

from tests.gateway_process import GatewayProcess
from tests.test_ui import REPLY, SEND, open_page, send, wait_reply_done
from tests.ui_rig import module_gateway, on_shared, set_pace

NOTE = ".render-note"
PLAIN = ".plain-text"
FIRST, SECOND, THIRD = "**first** reply", "the middle one", "**third** reply"
DEEP_QUOTE = ">" * 3000 + " and round again"  # what a model stuck in a loop writes
DEEP_MATH = "$$" + "{" * 5000 + "x$$"
# Nothing guards `\left` nesting before rendering: KaTeX's own stack overflows, and the
# renderer's catch has to show it (the class of input that throws, beyond the known ones).
UNGUARDED_THROW = "$$" + "\\left(" * 5000 + "x" + "\\right)" * 5000 + "$$"


# Replies a millisecond a chunk: the long echo of a loop streams in many pieces, fast.
shared_gateway_process = module_gateway("ui-render", delay_s=0.001)


@pytest.fixture
def scripted_gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    """Here the module's scripted gateway (tests/ui_rig.py shared_scripted_gateway): each
    test imports or writes a chat of its own and opens it."""
    yield from on_shared(shared_gateway_process)


def nested_list(levels: int) -> str:
    return "".join(f"{'  ' * level}- level {level}\n" for level in range(levels))


def import_chat(gateway: GatewayProcess, replies: list[str],
                provenance: dict[int, dict] | None = None) -> str:
    """A chat of a question and a reply per entry of `replies` (as a chat file imports),
    `provenance` by reply index; its id."""
    messages: list[dict] = []
    parent = None
    for index, reply in enumerate(replies):
        for role, content in (("user", f"Question {index + 1}"), ("assistant", reply)):
            message_id = f"m{len(messages)}"
            messages.append({"id": message_id, "parent_id": parent, "role": role,
                             "content": content, "status": "complete",
                             "created_at": f"2025-01-01T00:00:{len(messages):02d}",
                             "provenance": (provenance or {}).get(index)
                             if role == "assistant" else None})
            parent = message_id
    response = gateway.http.post("/api/chats/import", json={
        "format": "lfgate-chat", "version": 1,
        "chat": {"title": "render isolation", "created_at": "2025-01-01T00:00:00",
                 "updated_at": "2025-01-01T00:01:00", "active_leaf_id": parent},
        "messages": messages})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def open_chat(page: Page, gateway: GatewayProcess, chat_id: str, replies: int) -> None:
    page.goto(f"{gateway.url}/#/chat/{chat_id}")
    expect(page.locator(REPLY)).to_have_count(replies)
    expect(page.locator(".user-text")).to_have_text(
        [f"Question {n + 1}" for n in range(replies)])


def reply(page: Page, index: int):
    return page.locator(REPLY).nth(index)


def expect_rendered(page: Page, index: int, bold: str) -> None:
    """Reply `index` rendered as Markdown, with no note."""
    expect(reply(page, index).locator(".markdown strong")).to_have_text(bold)
    expect(reply(page, index).locator(NOTE)).to_have_count(0)


def expect_plain(page: Page, index: int, text: str, why: str) -> None:
    """Reply `index` shown as its own text, verbatim, under a note saying `why`."""
    note = reply(page, index).locator(NOTE)
    expect(note).to_contain_text("Shown as plain text")
    expect(note).to_contain_text(why)
    assert reply(page, index).locator(PLAIN).text_content() == text


@pytest.mark.parametrize(("bad", "why"), [(DEEP_QUOTE, "nested too deeply"),
                                          (DEEP_MATH, "nested too deeply")],
                         ids=["3000-quote-markers", "5000-braces-in-math"])
def test_a_reply_that_overflows_the_renderer_is_plain_text_and_hides_nothing(
        page: Page, scripted_gateway, bad: str, why: str) -> None:
    """issue 24 finding 8: the reply between two others shows as plain text with a note; the
    replies before and after it, and every question, still show."""
    chat_id = import_chat(scripted_gateway, [FIRST, bad, THIRD])
    open_chat(page, scripted_gateway, chat_id, 3)
    expect_rendered(page, 0, "first")
    expect_plain(page, 1, bad, why)
    expect_rendered(page, 2, "third")
    assert page.js_errors == []


def test_a_thousand_level_nested_list_is_cut_to_plain_text(page: Page,
                                                           scripted_gateway) -> None:
    """issue 24 finding 8: a 1,000-level nested list (7.4 s to render) is refused before it is
    rendered, and shown as its text with the note. No timing is asserted: the note is what
    says the render was cut."""
    deep = nested_list(1000)
    chat_id = import_chat(scripted_gateway, [FIRST, deep])
    open_chat(page, scripted_gateway, chat_id, 2)
    expect_rendered(page, 0, "first")
    expect_plain(page, 1, deep, "1,000 levels")
    # A list as deep as a person writes still renders as one.
    shallow = nested_list(6)
    chat_id = import_chat(scripted_gateway, [shallow])
    open_chat(page, scripted_gateway, chat_id, 1)
    expect(reply(page, 0).locator(".markdown ul")).to_have_count(6)
    expect(reply(page, 0).locator(NOTE)).to_have_count(0)
    assert page.js_errors == []


def test_any_throw_while_rendering_is_caught_for_that_reply_only(page: Page,
                                                                 scripted_gateway) -> None:
    """issue 24 finding 8, the class: input no pre-check knows (`\\left(` nested 5,000 deep
    overflows KaTeX's stack) is caught as it throws; the note gives the reason."""
    chat_id = import_chat(scripted_gateway, [FIRST, UNGUARDED_THROW, THIRD])
    open_chat(page, scripted_gateway, chat_id, 3)
    expect_rendered(page, 0, "first")
    expect_plain(page, 1, UNGUARDED_THROW, "could not be rendered as Markdown")
    expect(reply(page, 1).locator(NOTE)).to_contain_text("call stack")
    expect_rendered(page, 2, "third")
    assert page.js_errors == []


def test_a_message_that_throws_outside_markdown_shows_alone_as_plain_text(
        page: Page, scripted_gateway) -> None:
    """issue 24 finding 8, beyond Markdown: a reply whose provenance comes in a shape this page
    does not expect (a gateway of another version: its rate a string; the gateway's answer
    is rewritten on its way to the page, as today's gateway refuses to store it) throws in
    the message component itself. That message shows its text with a note; the others, and
    the page, go on."""
    chat_id = import_chat(scripted_gateway, [FIRST, SECOND, THIRD])

    def unexpected_provenance(route: Route) -> None:
        response = route.fetch()
        chat = response.json()
        for message in chat["messages"]:
            if message["content"] == SECOND:
                message["provenance"] = {"model": "default",
                                         "box_timing": {"tokens_per_s": "fast"}}
        route.fulfill(response=response, json=chat)

    page.route(f"**/api/chats/{chat_id}", unexpected_provenance)
    open_chat(page, scripted_gateway, chat_id, 3)
    expect_rendered(page, 0, "first")
    expect_plain(page, 1, SECOND, "could not be shown as usual")
    expect_rendered(page, 2, "third")
    # The page still works: a new message in this chat gets its reply.
    send(page, "still here?")
    wait_reply_done(page, 4)
    expect(reply(page, 3)).to_contain_text("still here?")
    assert page.js_errors == []


def test_a_reply_streaming_into_a_loop_turns_to_plain_text_and_the_chat_goes_on(
        page: Page, scripted_gateway) -> None:
    """issue 24 finding 8, live: the reply grows past the nesting the page renders while it
    streams; it goes on as plain text with the note, the reply before it stays rendered, and
    the next turn renders as Markdown again."""
    gateway = scripted_gateway
    open_page(page, gateway)
    send(page, "**hello** there")
    wait_reply_done(page, 1)
    expect_rendered(page, 0, "hello")
    loop = "round\n" + DEEP_QUOTE
    send(page, loop)  # the scripted box echoes it: "Echo #2 from …: round\n>>>…"
    wait_reply_done(page, 2)
    note = reply(page, 1).locator(NOTE)
    expect(note).to_contain_text("nested too deeply")
    expect(reply(page, 1).locator(PLAIN)).to_contain_text(loop)
    expect_rendered(page, 0, "hello")
    send(page, "**after** that")
    wait_reply_done(page, 3)
    expect_rendered(page, 2, "after")
    assert page.js_errors == []


def test_a_render_over_the_time_budget_goes_plain_until_asked(page: Page,
                                                              scripted_gateway) -> None:
    """issue 24 finding 8, the time guard: once rendering a growing reply took longer than the
    budget, the rest of it shows as plain text instead of stalling the page on every piece,
    and "Render anyway" renders it. The budget is set below any render's time (-1 ms), for
    texts of any length, so every render counts as slow whatever this machine's speed:
    nothing here is timed."""
    gateway = scripted_gateway
    open_page(page, gateway)
    page.evaluate("async () => { Object.assign((await import('./markdown.js')).renderLimits,"
                  " { budgetMs: -1, slowMinChars: 1 }); }")
    # Paced, so the page draws the reply while it grows: the guard is for a growing text (a
    # loaded machine once drew the whole reply at once, as its first and only render).
    set_pace(gateway, 0.2)
    send(page, "show code")
    note = reply(page, 0).locator(NOTE)
    expect(note).to_contain_text("took too long")  # while it streams
    set_pace(gateway, 0)
    wait_reply_done(page, 1)
    expect(note).to_contain_text("took too long")  # and once it has ended
    expect(reply(page, 0).locator(".markdown pre")).to_have_count(0)
    expect(page.locator(SEND)).to_be_visible()
    note.get_by_role("button", name="Render anyway").click()
    expect(reply(page, 0).locator(".markdown pre code")).to_contain_text("def greet")
    expect(note).to_have_count(0)
    assert page.js_errors == []
