"""The compare view, votes, blind mode and the leaderboard in a real browser (Debian's
Chromium under Playwright) against a real `lfgate serve` on the scripted box double, with a
LlamaFactory saves/ tree (tests/rig/saves_tree.py): several models on one base, so a compare
runs as one batch. The double answers each column "Echo #<n> from <base> + <adapter>: <text>",
and "long" in the message gives a long reply to stop."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.gateway_process import GatewayProcess
from tests.rig.cut_proxy import CutProxy
from tests.rig.saves_tree import make_saves
from tests.test_streams import long_reply
from tests.test_ui import MODELS, SEND, open_page, send, wait_for_polls
from tests.ui_rig import (
    FAST_PACE_S,
    SCRIPTED_BASE,
    errors_but_network,
    module_gateway,
    on_shared,
    record_streamed,
    set_pace,
    shared_scripted_gateway,
    streamed,
)

expect.set_options(timeout=20_000)

A, A10 = "tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-10"
B100 = "tiny--lora--sft-b--checkpoint-100"
# What the double says each model is: the basenames of its base and adapter.
ECHO = {"default": "tiny-base + tiny-adapter", "base": "tiny-base + no adapter",
        A: "tiny-base + sft-a", A10: "tiny-base + checkpoint-10",
        B100: "tiny-base + checkpoint-100"}
CELL = "article.cmp-cell"
TURN = "section.cmp-turn"
STOP_ALL = "button[aria-label='Stop all columns']"
PHONE = {"width": 375, "height": 740}
QUESTION = ("which one are you, and what were you trained on, and how would you describe "
            "yourself to somebody who has never met a fine-tuned model before")


shared_gateway_process = module_gateway("ui-compare", with_saves=True)


@pytest.fixture
def gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    """A scripted gateway on a saves tree, shared by the module's tests that only look at
    compares of their own (tests/ui_rig.py shared_scripted_gateway)."""
    yield from on_shared(shared_gateway_process)


@pytest.fixture
def own_gateway(make_scripted_gateway, tmp_path: Path) -> GatewayProcess:
    """The same, for this test alone: it reads what the whole gateway holds (the
    leaderboard)."""
    saves = tmp_path / "saves"
    make_saves(saves, SCRIPTED_BASE)
    return make_scripted_gateway(env={"ADAPTER_DIRS": str(saves)})


@pytest.fixture
def slow_gateway(gateway: GatewayProcess) -> GatewayProcess:
    """The same, its long replies paced (400 chunks, about 12 s): a page can leave and come
    back mid-reply."""
    set_pace(gateway, 0.03)
    return gateway


def column(page: Page, letter: str) -> Locator:
    """A column's head: its letter, its model picker (or its hidden name), remove."""
    return page.locator(f".cmp-heads [role='group'][aria-label='Column {letter}']")


def cell(page: Page, turn: int, letter: str) -> Locator:
    return page.locator(f"{TURN}[aria-label='Turn {turn}'] {CELL}[aria-label='Column {letter}']")


def start_compare(page: Page, gateway: GatewayProcess, models: list[str], *,
                  blind: bool = False) -> None:
    """Open a new compare and set its columns to `models`, as a user does."""
    open_page(page, gateway)
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.locator(".cmp-heads [role='group']")).to_have_count(2)
    while page.locator(".cmp-heads [role='group']").count() < len(models):
        page.click("button[aria-label='Add a column']")
    for index, model in enumerate(models):
        pick_column(page, "ABCD"[index], model)
    if blind:
        page.get_by_label("Blind").check()


def pick_column(page: Page, letter: str, model: str) -> None:
    trigger = column(page, letter).locator("button.model-trigger")
    trigger.click()
    page.locator(f"{MODELS} [role='option'][data-model='{model}']").click()
    expect(page.locator(MODELS)).to_have_count(0)
    expect(trigger.locator(".trigger-id")).to_have_text(model)


def wait_compare_done(page: Page, turns: int) -> None:
    """Every column of every turn ended and is shown as stored (its turn has its vote bar)."""
    expect(page.locator(SEND)).to_be_visible()
    expect(page.locator(TURN)).to_have_count(turns)
    expect(page.locator(f"{CELL}[aria-busy='true']")).to_have_count(0)
    expect(page.locator(f"{CELL}.status-streaming")).to_have_count(0)
    expect(page.locator(f"{TURN} .vote")).to_have_count(turns)


def chat_id(page: Page) -> str:
    return re.search(r"#/chat/([\w-]+)$", page.url)[1]


def stored(page: Page, gateway: GatewayProcess) -> dict:
    return gateway.http.get(f"/api/chats/{chat_id(page)}").json()


def column_texts(chat: dict) -> list[list[str]]:
    """Each stored column's messages, root first (walked up from its leaf)."""
    by_id = {m["id"]: m for m in chat["messages"]}
    columns = []
    for slot in chat["compare"]["slots"]:
        path, cursor = [], slot["leaf_id"]
        while cursor:
            path.append(by_id[cursor]["content"])
            cursor = by_id[cursor]["parent_id"]
        columns.append(path[::-1])
    return columns


def test_a_compare_of_three_models_streams_three_columns(page: Page, gateway) -> None:
    set_pace(gateway, 0.2)
    start_compare(page, gateway, ["default", "base", A])
    expect(page.locator("button[aria-label='Add a column']")).to_be_enabled()
    # Long enough that the replies stream for seconds (about 40 chunks 0.2 s apart): the
    # checks of the streaming state below have time, whatever the machine's load.
    send(page, QUESTION)
    # All three stream at once (one batch), each with its own Stop.
    expect(page.locator(f"{CELL}[aria-busy='true']")).to_have_count(3)
    for letter in "ABC":
        expect(cell(page, 1, letter).locator(f"button[aria-label='Stop column {letter}']")
               ).to_be_visible()
    expect(page.locator(STOP_ALL)).to_be_visible()
    expect(page.locator(".cmp-mode-name")).to_have_text("batch")
    expect(page.locator(".cmp-mode")).to_contain_text("One generate call")
    set_pace(gateway, FAST_PACE_S)  # seen streaming: the rest at once
    wait_compare_done(page, 1)

    for letter, model in zip("ABC", ["default", "base", A], strict=True):
        reply = cell(page, 1, letter)
        expect(reply.locator(".markdown")).to_have_text(
            f"Echo #1 from {ECHO[model]}: {QUESTION}")
        expect(reply.locator(".cmp-model")).to_have_text(model)
        timing = reply.locator(".cmp-timing")
        expect(timing.locator(".t-ttft")).to_have_text(re.compile(r"TTFT \d+ ms|TTFT [\d.]+ s"))
        expect(timing.locator(".t-rate")).to_have_text(re.compile(r"[\d.]+ tok/s"))
        expect(timing.locator(".t-tokens")).to_have_text(re.compile(r"\d+ tokens"))
        expect(timing.locator(".t-total")).to_have_text(re.compile(r"[\d.]+ m?s total"))
    chat = stored(page, gateway)
    assert [s["model"] for s in chat["compare"]["slots"]] == ["default", "base", A]
    assert [m["status"] for m in chat["messages"]] == ["complete"] * 4

    # The chat list tags it; opened again (a reload), it shows as columns.
    item = page.locator(".chat-item", has_text="which one are you")
    expect(item.locator(".source-tag")).to_have_text("Compare")
    page.get_by_role("button", name="+ New chat").click()
    expect(page.locator(".empty-state")).to_be_visible()
    item.locator(".chat-link").click()
    expect(cell(page, 1, "C").locator(".markdown")).to_contain_text(ECHO[A])
    page.reload()
    expect(page.locator(CELL)).to_have_count(3)
    expect(column(page, "B").locator(".trigger-id")).to_have_text("base")
    expect(page.locator(".cmp-mode-name")).to_have_text("batch")  # read from the replies
    # Its columns are fixed now: nothing to add or remove.
    expect(page.locator("button[aria-label='Add a column']")).to_have_count(0)
    expect(page.locator("button[aria-label^='Remove column']")).to_have_count(0)
    assert page.js_errors == []


def test_stop_one_column_and_the_others_go_on_then_stop_all(page: Page, gateway) -> None:
    start_compare(page, gateway, ["default", A, "base"])
    send(page, "tell me a long story")
    expect(cell(page, 1, "B")).to_contain_text("sentence 3")
    with page.expect_response(lambda r: "/stop" in r.url) as stopped:
        cell(page, 1, "B").locator("button[aria-label='Stop column B']").click()
    assert stopped.value.ok
    # In a batch, the stopped row ends at once (its own `done`) while the others go on.
    expect(cell(page, 1, "B").locator(".notice.stopped")).to_have_text("Stopped")
    expect(cell(page, 1, "B").locator("button[aria-label='Stop column B']")).to_have_count(0)
    expect(cell(page, 1, "C").locator("button[aria-label='Stop column C']")).to_be_visible()
    # The others go on well past where B stopped.
    expect(cell(page, 1, "A")).to_contain_text("sentence 20")
    expect(cell(page, 1, "C")).to_contain_text("sentence 20")
    expect(cell(page, 1, "C").locator("button[aria-label='Stop column C']")).to_be_visible()
    assert "sentence 20" not in cell(page, 1, "B").inner_text()
    set_pace(gateway, FAST_PACE_S)  # the others' rest at once
    wait_compare_done(page, 1)
    expect(cell(page, 1, "B").locator(".notice.stopped")).to_have_text("Stopped")
    statuses = {m["provenance"]["slot"]: m for m in stored(page, gateway)["messages"]
                if m["role"] == "assistant"}
    assert [statuses[i]["status"] for i in range(3)] == ["complete", "stopped", "complete"]
    assert statuses[0]["content"].endswith("This is senten")  # all of it
    assert len(statuses[1]["content"]) < len(statuses[0]["content"]) / 2
    expect(cell(page, 1, "A").locator(".notice")).to_have_count(0)

    set_pace(gateway, None)
    send(page, "another long one")
    expect(cell(page, 2, "A")).to_contain_text("sentence 2")
    page.click(STOP_ALL)
    wait_compare_done(page, 2)
    for letter in "ABC":
        expect(cell(page, 2, letter).locator(".notice.stopped")).to_have_text("Stopped")
    send(page, "and a long one stopped with Esc")
    expect(cell(page, 3, "C")).to_contain_text("sentence 2")
    page.keyboard.press("Escape")
    wait_compare_done(page, 3)
    replies = [m for m in stored(page, gateway)["messages"] if m["role"] == "assistant"]
    assert sorted(m["status"] for m in replies) == ["complete"] * 2 + ["stopped"] * 7
    assert page.js_errors == []


def replies_of_turn(chat: dict, turn: int) -> list[dict]:
    """The stored replies of compare turn `turn` (from 1), in column order."""
    by_id = {m["id"]: m for m in chat["messages"]}
    columns = []
    for slot in chat["compare"]["slots"]:
        path, cursor = [], slot["leaf_id"]
        while cursor:
            path.append(by_id[cursor])
            cursor = by_id[cursor]["parent_id"]
        columns.append([m for m in path[::-1] if m["role"] == "assistant"][turn - 1])
    return columns


def assert_columns_as_stored(page: Page, turn: int, replies: list[dict], *,
                             growing: bool) -> None:
    """Each column shows its stored reply, and while it streamed showed only beginnings of it
    (a chunk twice or missed breaks that); `growing`: each text also began the next."""
    for letter, reply in zip("ABCD", replies, strict=False):
        shown = cell(page, turn, letter).locator(".reply > .markdown").text_content().strip()
        assert shown == reply["content"].strip(), letter
        seen = streamed(page, reply["id"])
        assert len(seen) >= 2, (letter, seen)  # it streamed here, render after render
        for text in seen:
            assert reply["content"].startswith(text), (letter, text)
        if growing:
            for before, after in itertools.pairwise(seen):
                assert after.startswith(before), (letter, before, after)


def test_a_reload_mid_compare_follows_every_column_to_its_stored_end(
        page: Page, slow_gateway, reliability) -> None:
    gateway = slow_gateway
    record_streamed(page)
    start_compare(page, gateway, ["default", A])
    send(page, "tell me a long story")
    for letter in "AB":
        expect(cell(page, 1, letter)).to_contain_text("sentence 3")
    page.reload()  # both columns go on on the box; the page follows each again
    expect(page.locator(f"{CELL}[aria-busy='true']")).to_have_count(2)
    expect(page.locator(STOP_ALL)).to_be_visible()
    set_pace(gateway, FAST_PACE_S)  # followed again: the rest need not take seconds
    wait_compare_done(page, 1)
    chat = stored(page, gateway)
    assert len([m for m in chat["messages"] if m["role"] == "assistant"]) == 2  # once each
    first = replies_of_turn(chat, 1)
    assert [m["status"] for m in first] == ["complete", "complete"]
    assert [m["content"] for m in first] == [long_reply()] * 2  # the box's text, whole
    assert_columns_as_stored(page, 1, first, growing=False)

    # Stop all, on a compare the page picked up after a reload.
    set_pace(gateway, 0.03)
    send(page, "and another long one")
    for letter in "AB":
        expect(cell(page, 2, letter)).to_contain_text("sentence 3")
    page.reload()
    expect(page.locator(f"{CELL}[aria-busy='true']")).to_have_count(2)
    page.click(STOP_ALL)
    wait_compare_done(page, 2)
    for letter in "AB":
        expect(cell(page, 2, letter).locator(".notice.stopped")).to_have_text("Stopped")
    second = replies_of_turn(stored(page, gateway), 2)
    assert [m["status"] for m in second] == ["stopped", "stopped"]
    assert all(long_reply().startswith(m["content"]) and len(m["content"]) < len(long_reply())
               for m in second)
    assert_columns_as_stored(page, 2, second, growing=False)
    assert page.js_errors == []
    mode = first[0]["provenance"]["compare_mode"]
    reliability.record(
        "streams", f"The page reloaded mid-compare (2 columns, {mode} mode)",
        f"the page followed each column again, live, to its end: {first[0]['status']} and "
        f"{first[1]['status']}, each equal to the box's text and to its stored reply, stored "
        f"once; Stop all after a reload stopped the next turn ({second[0]['status']}, "
        f"{second[1]['status']})")


def test_a_dropped_connection_mid_compare_reattaches_every_column(
        page: Page, slow_gateway, reliability) -> None:
    gateway = slow_gateway
    tries = []  # the page's reattaches: GET /api/compare/{compare_id}/stream
    page.on("request", lambda request: tries.append(request) if "/stream" in request.url else None)
    with CutProxy(gateway.port) as proxy:
        record_streamed(page)
        start_compare(page, proxy, ["default", A])  # the page reaches the gateway through it
        send(page, "tell me a long story")
        for letter in "AB":
            expect(cell(page, 1, letter)).to_contain_text("sentence 3")
        proxy.refuse()
        assert proxy.cut() >= 1  # the compare's stream reset under the page
        expect(page.locator(f"{CELL} .reconnecting")).to_have_count(2)
        held = [cell(page, 1, letter).locator(".reply > .markdown").text_content().strip()
                for letter in "AB"]
        assert all("sentence 2" in text for text in held)  # what arrived stays
        expect(page.locator(STOP_ALL)).to_be_visible()
        proxy.allow()  # the next try gets through: the compare's stream, from each column's id
        expect(page.locator(f"{CELL} .reconnecting")).to_have_count(0)
        set_pace(gateway, FAST_PACE_S)  # reattached: the rest streams on, at once
        wait_compare_done(page, 1)
        first = replies_of_turn(stored(page, gateway), 1)
        assert [m["status"] for m in first] == ["complete", "complete"]
        assert [m["content"] for m in first] == [long_reply()] * 2
        assert_columns_as_stored(page, 1, first, growing=True)
        for reply, before in zip(first, held, strict=True):
            assert len(streamed(page, reply["id"])[-1]) > len(before)  # streamed on after it
        # Every try named each column's last event (one id per column), not the start.
        asked = [request.headers.get("last-event-id") for request in tries]
        assert asked and all(re.fullmatch(r"[1-9]\d*\.[1-9]\d*", i or "") for i in asked), asked
        assert all("/api/compare/" in request.url for request in tries)
        assert errors_but_network(page) == []
    reliability.record(
        "streams", "The page's connection dropped mid-compare (its socket reset; new "
        "connections refused for a while)",
        "both columns showed Reconnecting… and kept what had arrived; the page reattached to "
        f"the compare by itself from each column's last event: {first[0]['status']} and "
        f"{first[1]['status']}, every text shown a beginning of the stored reply, which equals "
        "the box's")


def test_multi_turn_each_column_keeps_its_own_history(page: Page, gateway) -> None:
    start_compare(page, gateway, ["default", A])
    send(page, "first question")
    wait_compare_done(page, 1)
    # The next message goes to every column; column B moves on to another checkpoint.
    pick_column(page, "B", A10)
    send(page, "second question")
    wait_compare_done(page, 2)
    expect(page.locator(f"{TURN} .cmp-prompt")).to_have_text(["first question",
                                                              "second question"])
    expect(cell(page, 2, "A").locator(".markdown")).to_have_text(
        f"Echo #2 from {ECHO['default']}: second question")
    expect(cell(page, 2, "B").locator(".markdown")).to_have_text(
        f"Echo #2 from {ECHO[A10]}: second question")
    expect(cell(page, 1, "B").locator(".markdown")).to_have_text(
        f"Echo #1 from {ECHO[A]}: first question")
    chat = stored(page, gateway)
    assert [s["model"] for s in chat["compare"]["slots"]] == ["default", A10]
    first, second = column_texts(chat)
    assert first[::2] == second[::2] == ["first question", "second question"]
    assert second[1::2] == [f"Echo #1 from {ECHO[A]}: first question",
                            f"Echo #2 from {ECHO[A10]}: second question"]
    # The composer's text is kept per compare chat, like a chat's.
    page.fill("#message", "half-written")
    page.reload()
    expect(page.locator("#message")).to_have_value("half-written")
    expect(page.locator(TURN)).to_have_count(2)
    assert page.js_errors == []


def test_votes_per_turn_and_the_chat_tally(page: Page, gateway) -> None:
    start_compare(page, gateway, ["default", A])
    send(page, "question one")
    wait_compare_done(page, 1)
    bar = page.locator("[role='group'][aria-label='Vote on turn 1']")
    expect(bar.get_by_role("button")).to_have_text(["A is better", "B is better", "Tie",
                                                     "Both bad"])
    bar.get_by_label("Reason for the vote on turn 1 (optional)").fill("more specific")
    with page.expect_response(lambda r: r.url.endswith("/votes")
                              and r.request.method == "POST") as posted:
        bar.get_by_role("button", name="B is better").click()
    assert posted.value.ok
    voted = page.locator("[role='status'][aria-label='Your vote on turn 1']")
    expect(voted).to_contain_text(f"Voted: B is better ({A}) · “more specific”")
    expect(cell(page, 1, "B").locator(".cmp-verdict")).to_have_text("★ best")
    expect(cell(page, 1, "A").locator(".cmp-verdict")).to_have_count(0)
    tally = page.locator("[aria-label='Votes in this chat'] tbody tr")
    expect(tally).to_have_text([re.compile(rf"{A}\s*1\s*0\s*0"),
                                re.compile(r"default\s*0\s*1\s*0")])

    send(page, "question two")
    wait_compare_done(page, 2)
    page.locator("[role='group'][aria-label='Vote on turn 2']").get_by_role(
        "button", name="Tie").click()
    expect(page.locator("[aria-label='Your vote on turn 2']")).to_contain_text("Voted: Tie")
    expect(tally).to_have_text([re.compile(rf"{A}\s*1\s*0\s*1"),
                                re.compile(r"default\s*0\s*1\s*1")])

    # Voting again replaces the vote: turn 1 goes to A.
    voted.get_by_role("button", name="Change vote").click()
    again = page.locator("[role='group'][aria-label='Vote on turn 1']")
    expect(again.get_by_role("button", name="B is better")).to_have_attribute(
        "aria-pressed", "true")
    again.get_by_label("Reason for the vote on turn 1 (optional)").fill("")
    again.get_by_role("button", name="A is better").click()
    expect(voted).to_have_text(re.compile(r"Voted: A is better \(default\)\s*Change vote"))
    expect(tally).to_have_text([re.compile(r"default\s*1\s*0\s*1"),
                                re.compile(rf"{A}\s*0\s*1\s*1")])
    votes = gateway.http.get(f"/api/chats/{chat_id(page)}/votes").json()
    assert sorted(v["winner"] for v in votes["votes"]) == ["0", "tie"]
    assert votes["tally"][A] == {"wins": 0, "losses": 1, "ties": 1}
    page.reload()  # stored: the votes and the tally come back
    expect(voted).to_contain_text("Voted: A is better (default)")
    expect(page.locator("[aria-label='Your vote on turn 2']")).to_contain_text("Voted: Tie")
    expect(tally).to_have_count(2)
    assert page.js_errors == []


def test_three_columns_vote_for_the_best_one(page: Page, gateway) -> None:
    start_compare(page, gateway, ["default", A, B100])
    send(page, "pick one")
    wait_compare_done(page, 1)
    bar = page.locator("[role='group'][aria-label='Vote on turn 1']")
    expect(bar.get_by_role("button")).to_have_text(["A is best", "B is best", "C is best",
                                                     "Tie", "All bad"])
    bar.get_by_role("button", name="All bad").click()
    expect(page.locator("[aria-label='Your vote on turn 1']")).to_contain_text("Voted: All bad")
    for letter in "ABC":
        expect(cell(page, 1, letter).locator(".cmp-verdict")).to_have_text("bad")
    votes = gateway.http.get(f"/api/chats/{chat_id(page)}/votes").json()
    assert [v["winner"] for v in votes["votes"]] == ["both_bad"]
    assert votes["tally"][B100] == {"wins": 0, "losses": 0, "ties": 2}
    assert page.js_errors == []


def test_blind_mode_hides_the_names_until_the_vote(page: Page, gateway) -> None:
    models = ["default", A, B100]
    start_compare(page, gateway, models, blind=True)
    send(page, "judge us blind")
    wait_compare_done(page, 1)
    view = page.locator(".cmp")
    expect(page.locator(".cmp-heads .cmp-hidden-name")).to_have_count(3)
    expect(page.locator(".cmp-heads button.model-trigger")).to_have_count(0)
    expect(page.locator(".cmp-model")).to_have_text(["Model A", "Model B", "Model C"])
    expect(page.locator(".blind-badge")).to_have_text("blind")
    shown = view.inner_text()
    assert all(model not in shown for model in (A, B100, "default")), shown
    titles = page.locator(".cmp [title]").evaluate_all("els => els.map(e => e.title).join(' ')")
    assert A not in titles and B100 not in titles
    expect(page.locator(".chat-item", has_text="judge us blind").locator(".source-tag")
           ).to_have_text("Blind")
    expect(page.locator("button[aria-label='Export chat']")).to_have_count(0)  # it names them

    # The vote reveals who was who: its answer names the models in column order.
    with page.expect_response(lambda r: r.url.endswith("/votes")
                              and r.request.method == "POST") as posted:
        page.locator("[role='group'][aria-label='Vote on turn 1']").get_by_role(
            "button", name="B is best").click()
    order = posted.value.json()["models"]
    assert sorted(order) == sorted(models)
    expect(page.locator(".cmp-model")).to_have_text(order)
    expect(page.locator("[aria-label='Your vote on turn 1']")).to_contain_text(
        f"B is best ({order[1]})")
    expect(page.locator(".cmp-heads .cmp-hidden-name")).to_have_count(0)
    expect(page.locator(".cmp-heads .trigger-id")).to_have_text(order)
    expect(page.locator(".blind-badge")).to_have_text("blind · revealed")
    expect(page.locator("button[aria-label='Export chat']")).to_be_visible()
    for letter, model in zip("ABC", order, strict=True):  # each column is the model named
        expect(cell(page, 1, letter).locator(".markdown")).to_contain_text(ECHO[model])
    assert stored(page, gateway)["compare"]["blind"] is True
    assert page.js_errors == []


def vote_on_compares(gateway: GatewayProcess, models: list[str], winners: list[str]) -> None:
    """A compare of `models` per winner, through the API, each voted for that winner."""
    gateway.http.post("/api/models/refresh")
    for winner in winners:
        _, events = gateway.chat_at("/api/compare", {"message": "hi", "models": models})
        head = events[0][1]
        vote = gateway.http.post(f"/api/chats/{head['chat_id']}/votes",
                                 json={"compare_id": head["compare_id"], "winner": winner})
        assert vote.status_code == 200, vote.text


def test_the_leaderboard_shows_ratings_after_votes_and_downloads_csv(page: Page,
                                                                     own_gateway) -> None:
    gateway = own_gateway
    # A beats default four times, loses twice, ties twice: six decisive votes each, enough
    # for an interval.
    vote_on_compares(gateway, ["default", A], ["1", "1", "0", "tie"] * 2)
    open_page(page, gateway)
    page.get_by_role("button", name="Leaderboard").click()
    expect(page).to_have_url(re.compile(r"#/leaderboard$"))
    board = page.locator("main[aria-label='Leaderboard']")
    expect(board.locator(".board-votes")).to_have_text("8 votes")
    rows = board.locator("table.standings tbody tr")
    expect(rows).to_have_count(2)
    api = gateway.http.get("/api/leaderboard").json()
    for row, standing in zip((rows.nth(0), rows.nth(1)), api["standings"], strict=True):
        assert not standing["too_few_votes"], standing
        expect(row.locator(".model")).to_have_text(standing["model"])
        expect(row.locator(".rating")).to_have_text(str(round(standing["rating"])))
        expect(row.locator(".ci-text")).to_have_text(
            f"{round(standing['ci_low'])}–{round(standing['ci_high'])}")
        cells = row.locator("td")  # rank, rating, interval, votes, W, L, T
        expect(cells.nth(3)).to_have_text(str(standing["votes"]))
        expect(cells.nth(4)).to_have_text(str(standing["wins"]))
        expect(cells.nth(5)).to_have_text(str(standing["losses"]))
        expect(cells.nth(6)).to_have_text(str(standing["ties"]))
    expect(rows.nth(0).locator(".model")).to_have_text(A)
    expect(rows.nth(0).locator("td").nth(4)).to_have_text("4")
    # The win-rate matrix: A's share against default (four wins and two ties in eight) and
    # back.
    share = api["win_rate"][A]["default"]
    assert share == pytest.approx(0.625)
    matrix = board.locator("table.winrate tbody tr")
    expect(matrix.nth(0).locator("td")).to_have_text(["–", "63%"])
    expect(matrix.nth(1).locator("td")).to_have_text(["38%", "–"])

    with page.expect_download() as download:
        board.get_by_role("link", name="Download the leaderboard as CSV").click()
    assert download.value.suggested_filename == "lfgate-leaderboard.csv"
    rows_csv = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows_csv[0] == ["rank", "model", "rating", "ci_low", "ci_high", "votes", "wins",
                           "losses", "ties", "decisive_votes", "too_few_votes"]
    assert [r[1] for r in rows_csv[1:]] == [A, "default"]
    assert [r[-2:] for r in rows_csv[1:]] == [["6", "false"], ["6", "false"]]

    page.reload()  # the leaderboard is in the URL
    expect(board.locator(".board-votes")).to_have_text("8 votes")
    assert page.js_errors == []


def test_one_vote_is_too_few_for_an_interval_and_every_column_says_what_it_counts(
        page: Page, own_gateway) -> None:
    """Issue 23: one vote showed a 95% interval of "1218–1218", and a newcomer could not
    read "Votes 1, W 2"."""
    gateway = own_gateway
    vote_on_compares(gateway, ["default", A, B100], ["1"])  # one vote, B best of three
    page.goto(f"{gateway.url}/#/leaderboard")
    board = page.locator("main[aria-label='Leaderboard']")
    rows = board.locator("table.standings tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator(".model")).to_have_text(A)
    expect(rows.nth(0).locator("td")).to_have_text(
        ["1", re.compile(r"^\d+$"), "too few votes", "1", "2", "0", "0"])
    for index in range(3):
        interval = rows.nth(index).locator("td.ci")
        expect(interval).to_have_text("too few votes")  # no "1218–1218"
        expect(interval.locator(".ci-bar")).to_have_count(0)
        expect(interval.locator(".ci-text")).to_have_attribute(
            "title", "1 of the 5 won or lost votes an interval needs")
    # Every heading says what its column counts, and the legend under the table says it too.
    heads = board.locator("table.standings thead abbr")
    expect(heads).to_have_text(["Rating", "95% interval", "Votes", "W", "L", "T"])
    titles = heads.evaluate_all("abbrs => abbrs.map(a => a.title)")
    assert titles[2].startswith("Votes on the turns this model answered"), titles
    assert [t.split(":")[0] for t in titles[3:]] == ["Wins", "Losses", "Ties"], titles
    legend = board.locator("#board-legend")
    expect(legend).to_be_visible()
    expect(legend).to_contain_text("a vote over three columns is two games each")
    expect(legend).to_contain_text("“too few votes” until a model has 5 votes it won or lost")
    assert board.locator("table.standings").get_attribute("aria-describedby") == "board-legend"
    assert page.js_errors == []


def test_an_empty_leaderboard_says_how_to_fill_it(page: Page, scripted_gateway) -> None:
    page.goto(f"{scripted_gateway.url}/#/leaderboard")
    expect(page.locator(".board-empty")).to_contain_text("No votes yet")
    page.locator(".board-empty").get_by_role("link", name="Compare").click()
    expect(page.locator(".cmp-heads [role='group']")).to_have_count(2)
    assert page.js_errors == []


def test_the_word_diff_marks_the_words_that_differ(page: Page, gateway) -> None:
    start_compare(page, gateway, ["default", A, "base"])
    send(page, "spot the difference")
    wait_compare_done(page, 1)
    page.get_by_label("Word diff").check()
    a, b, c = (cell(page, 1, letter) for letter in "ABC")
    expect(a.locator("del.diff-del")).to_have_text(["tiny-adapter:"])
    expect(b.locator("ins.diff-ins")).to_have_text(["sft-a:"])
    expect(a.locator(".diff-text")).to_have_text(
        f"Echo #1 from {ECHO['default']}: spot the difference")  # the whole text, marked
    expect(c.locator(".diff-text")).to_have_count(0)  # not one of the pair
    # Another pair: B against C.
    page.get_by_label("Diff: first column").select_option("1")
    page.get_by_label("Diff: second column").select_option("2")
    expect(b.locator("del.diff-del")).to_have_text(["sft-a:"])
    expect(c.locator("ins.diff-ins")).to_have_text(["no adapter:"])
    expect(a.locator(".diff-text")).to_have_count(0)
    expect(a.locator(".markdown")).to_be_visible()
    page.get_by_label("Word diff").uncheck()
    expect(page.locator(".diff-text")).to_have_count(0)
    assert page.js_errors == []


def test_synced_scroll_moves_the_columns_together(page: Page, gateway) -> None:
    start_compare(page, gateway, ["default", A])
    set_pace(gateway, FAST_PACE_S)  # only the replies' height counts here, not their pace
    send(page, "a long one, please")
    wait_compare_done(page, 1)
    boxes = page.locator(f"{TURN} .cmp-scroll")
    assert boxes.nth(0).evaluate("b => b.scrollHeight > b.clientHeight + 200")
    expect(page.get_by_label("Sync scroll")).to_be_checked()
    boxes.nth(0).evaluate("b => { b.scrollTop = (b.scrollHeight - b.clientHeight) / 2; }")
    page.wait_for_function("""() => { const [a, b] = document.querySelectorAll('.cmp-scroll');
        const share = (x) => x.scrollTop / (x.scrollHeight - x.clientHeight);
        return b.scrollTop > 0 && Math.abs(share(a) - share(b)) < 0.01; }""")
    page.get_by_label("Sync scroll").uncheck()
    before = boxes.nth(1).evaluate("b => b.scrollTop")
    boxes.nth(0).evaluate("b => { b.scrollTop = 0; }")
    page.wait_for_function("() => document.querySelector('.cmp-scroll').scrollTop === 0")
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => "
                  "requestAnimationFrame(() => done())))")  # past the scroll events
    assert boxes.nth(1).evaluate("b => b.scrollTop") == before
    assert page.js_errors == []


def test_on_a_phone_the_columns_stack(make_page, gateway) -> None:
    page = make_page(viewport=PHONE, color_scheme="dark")
    open_page(page, gateway)
    page.click("button[aria-label='Show chats']")
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.locator("nav[aria-label='Chats']")).not_to_be_visible()
    pick_column(page, "B", A)
    send(page, "small screen")
    wait_compare_done(page, 1)
    first = cell(page, 1, "A").bounding_box()
    second = cell(page, 1, "B").bounding_box()
    assert first and second
    assert abs(first["x"] - second["x"]) < 1 and second["y"] >= first["y"] + first["height"]
    assert first["width"] > 300  # the width of the screen, not half of it
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.locator("[role='group'][aria-label='Vote on turn 1']").get_by_role(
        "button", name="A is better").click()
    expect(page.locator("[aria-label='Your vote on turn 1']")).to_contain_text("A is better")
    assert page.js_errors == []


# The latest turn in sight in the turns' box: the user's message whole, below the sticky
# column heads, and the first lines of every reply.
LATEST_TURN_IN_VIEW = """() => {
  const box = document.querySelector('.cmp-turns');
  const turns = box ? [...box.querySelectorAll(':scope > .cmp-turn')] : [];
  if (turns.length < 2) return false;
  const view = box.getBoundingClientRect();
  const top = Math.max(view.top, box.querySelector('.cmp-heads').getBoundingClientRect().bottom);
  const seen = (el, tall) => { const r = el.getBoundingClientRect();
    return r.top >= top - 1 && r.top + Math.min(tall, r.height) <= view.bottom + 1; };
  const latest = turns.at(-1);
  return seen(latest.querySelector('.cmp-prompt .user-text'), Infinity)
    && [...latest.querySelectorAll('.cmp-scroll')].every((reply) => seen(reply, 48));
}"""


def expect_latest_turn_in_view(page: Page, *, through_polls: bool = False) -> None:
    """`through_polls`: and it stays there while the page re-renders with what its next
    polls bring (a poll cycle is seconds: once per test is enough)."""
    expect(page.locator(TURN)).to_have_count(2)
    page.wait_for_function(LATEST_TURN_IN_VIEW)
    if through_polls:
        wait_for_polls(page)
        assert page.evaluate(LATEST_TURN_IN_VIEW)


def test_a_compare_chat_opens_on_its_latest_turn(page: Page, gateway) -> None:
    """Issue 23: a compare chat opened scrolled to its end (the vote, the tally), so a tall
    last turn had its message and the start of its replies out of sight."""
    set_pace(gateway, FAST_PACE_S)  # a tall turn is wanted, not a slow one
    gateway.http.post("/api/models/refresh")
    chat = {}
    for message in ("a short one first", "and now a long one, please"):
        _, events = gateway.chat_at("/api/compare", {"message": message,
                                                     "models": ["default", A], **chat})
        head = events[0][1]
        chat = {"chat_id": head["chat_id"]}
        vote = gateway.http.post(f"/api/chats/{head['chat_id']}/votes",
                                 json={"compare_id": head["compare_id"], "winner": "1"})
        assert vote.status_code == 200, vote.text
    gateway.chat({"message": "a plain chat", "model": "default"})
    compare_item = page.locator(".chat-item", has_text="a short one first")

    open_page(page, gateway)
    compare_item.locator(".chat-link").click()
    expect(page.locator(".cmp-tally")).to_be_visible()
    expect_latest_turn_in_view(page, through_polls=True)
    # Away to another chat and back, then a reload: the same.
    page.locator(".chat-item", has_text="a plain chat").locator(".chat-link").click()
    expect(page.locator("article[aria-label='Reply']")).to_have_count(1)
    compare_item.locator(".chat-link").click()
    expect_latest_turn_in_view(page)
    page.reload()
    expect_latest_turn_in_view(page)
    assert page.js_errors == []


LONG_RUN = "run-with-a-long-name-for-the-lr-sweep"
LONG_FINAL = f"tiny--lora--{LONG_RUN}"
LONG = f"{LONG_FINAL}--checkpoint-1200"


def add_long_run(saves: Path) -> None:
    """A run with a long name and its checkpoint at step 1200 beside make_saves' runs, as
    LlamaFactory leaves one (stand-in weights: the scripted box never reads them)."""
    run = saves / "tiny" / "lora" / LONG_RUN
    for folder in (run, run / "checkpoint-1200"):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps(
            {"base_model_name_or_path": SCRIPTED_BASE, "peft_type": "LORA", "r": 4}))
        (folder / "adapter_model.safetensors").write_bytes(b"\0" * 1000)
    (run / "training_args.yaml").write_text(
        f"finetuning_type: lora\nmodel_name_or_path: {SCRIPTED_BASE}\ntemplate: qwen\n")


@pytest.fixture(scope="module")
def long_ids_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A scripted gateway on the saves tree and a run with a long name (read only)."""
    folder = tmp_path_factory.mktemp("ui-compare-long-ids")
    make_saves(folder / "saves", SCRIPTED_BASE)
    add_long_run(folder / "saves")
    with shared_scripted_gateway(folder / "gateway",
                                 env={"ADAPTER_DIRS": str(folder / "saves")}) as gateway:
        yield gateway


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, PHONE],
                         ids=["1280", "375"])
def test_long_model_ids_are_whole_in_the_column_pickers(make_page, long_ids_gateway,
                                                         viewport) -> None:
    """Issue 23: four columns cut a long id to its first letters (its run and step squeezed
    it out, and spilled over the column's other controls); the list cut the run's name."""
    gateway = long_ids_gateway
    page = make_page(viewport=viewport)
    open_page(page, gateway)
    if page.locator("button[aria-label='Show chats']").is_visible():  # a phone
        page.click("button[aria-label='Show chats']")
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.locator(".cmp-heads [role='group']")).to_have_count(2)
    for _ in range(2):
        page.click("button[aria-label='Add a column']")
    models = ["default", LONG, LONG_FINAL, A]
    for letter, model in zip("ABCD", models, strict=True):
        pick_column(page, letter, model)
    for letter, model in zip("BC", models[1:3], strict=True):
        trigger = column(page, letter).locator("button.model-trigger")
        assert (trigger.get_attribute("title") or "").split("\n")[0] == model  # on hover
        fits = trigger.evaluate("""t => { const id = t.querySelector('.trigger-id');
            return { whole: id.scrollWidth <= id.clientWidth + 1
                       && id.scrollHeight <= id.clientHeight + 1,
                     inside: t.scrollWidth <= t.clientWidth + 1 }; }""")
        assert fits == {"whole": True, "inside": True}, (letter, fits)

    # The list: on the screen, the long run's name whole, each row's id in its title.
    column(page, "B").locator("button.model-trigger").click()
    listing = page.locator(".cmp-heads .pick-pop")
    expect(listing).to_be_visible()
    place = listing.bounding_box()
    assert place and place["x"] >= 0 and place["x"] + place["width"] <= viewport["width"], place
    run_name = listing.locator(".pick-run-name", has_text=LONG_RUN)
    expect(run_name).to_have_text(f"tiny/lora/{LONG_RUN}")
    assert run_name.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    option = page.locator(f"{MODELS} [role='option'][data-model='{LONG}']")
    assert (option.get_attribute("title") or "").split("\n")[0] == LONG
    page.keyboard.press("Escape")
    expect(listing).to_have_count(0)
    assert page.js_errors == []


def test_every_compare_control_is_named(page: Page, gateway) -> None:
    start_compare(page, gateway, ["default", A])
    send(page, "name everything")
    wait_compare_done(page, 1)
    page.get_by_label("Word diff").check()
    unnamed = page.evaluate("""() => [...document.querySelectorAll(
        'button, select, input, textarea, a[href], [tabindex]')].filter(el => {
          const label = el.getAttribute('aria-label') || el.textContent.trim()
            || (el.labels && el.labels[0] && el.labels[0].textContent.trim());
          return !label; }).map(el => el.outerHTML)""")
    assert unnamed == []
    assert page.js_errors == []
