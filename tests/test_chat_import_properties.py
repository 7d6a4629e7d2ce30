"""An imported chat as an input surface (issue 24, finding 7 and the property guard): the
import checks provenance and a compare chat's columns against what the gateway writes, so
a wrong type anywhere is a 422 naming its path and nothing is stored; and what an older
version stored unchecked (straight in the database here) reads as absent, so no reader
answers a 500: the chat, its JSON and Markdown exports, a vote on its compare turns, the
leaderboard and its CSV."""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lfgate.app import create_app
from lfgate.config import load_settings
from lfgate.services.evals.standings import Standings
from lfgate.storage.tables import Chat, Message, Vote

# --- documents ---------------------------------------------------------------------------

T0 = "2026-01-01T00:00:"


def moment(index: int) -> str:
    return f"{T0}{index:02d}+00:00"


def provenance(model: str, **extra: Any) -> dict[str, Any]:
    """A reply's provenance as the gateway writes it (TurnRecorder.provenance and finish)."""
    return {
        "model": model, "mode": "script", "box": "main", "host": "local",
        "base_model_path": "/models/m", "adapter_path": None, "template": "qwen",
        "finetuning_type": "lora", "infer_backend": "huggingface", "shared_base": True,
        "run": "sft-a", "step": None, "params": {"temperature": 0.3},
        "wrapper_version": "1.4", "protocol": 4,
        "notices": [{"code": "thinking_off", "message": "thinking is off"}],
        "finish_reason": "stop",
        "timing": {"ttft_ms": 12.5, "total_ms": 80, "chunks": 7},
        "box_timing": {"load_seconds": None, "ttft_ms": 10.1, "total_ms": 70.2, "chunks": 7,
                       "tokens_per_s": 41.7},
        "usage": {"prompt_tokens": 9, "completion_tokens": 7},
        "batch": {"id": "b1", "rows": 2},
        **extra,
    }


def compare_chat(models: list[str], turns: int = 1, *, blind: bool = False) -> dict[str, Any]:
    """A compare chat's export: one question, then a reply per slot, `turns` times (each
    slot's next question under its own last reply, as the gateway stores them)."""
    messages: list[dict[str, Any]] = []

    def add(role: str, parent: str | None, content: str, facts: dict | None = None) -> str:
        message_id = f"m{len(messages)}"
        messages.append({"id": message_id, "parent_id": parent, "role": role,
                         "content": content, "status": "complete",
                         "created_at": moment(len(messages)), "provenance": facts})
        return message_id

    leaves: list[str | None] = [None] * len(models)
    for turn in range(turns):
        question = None if turn else add("user", None, "Which is better?")
        for slot, model in enumerate(models):
            asked = question or add("user", leaves[slot], f"And turn {turn + 1}?")
            leaves[slot] = add("assistant", asked, f"{model} says {turn}", provenance(
                model, compare_id=f"turn{turn}", slot=slot, compare_mode="batch"))
    return {"format": "lfgate-chat", "version": 1,
            "chat": {"id": "c", "title": "Compare", "created_at": moment(0),
                     "updated_at": moment(59), "archived": False, "model": models[0],
                     "system": None, "params": {}, "active_leaf_id": leaves[0],
                     "source": "page",
                     "compare": {"slots": [{"model": m, "leaf_id": leaf}
                                           for m, leaf in zip(models, leaves, strict=True)],
                                 "blind": blind}},
            "messages": messages}


def plain_chat() -> dict[str, Any]:
    return {"format": "lfgate-chat", "version": 1,
            "chat": {"title": "Plain", "created_at": moment(0), "updated_at": moment(9),
                     "active_leaf_id": "a"},
            "messages": [
                {"id": "q", "parent_id": None, "role": "user", "content": "Hi?",
                 "created_at": moment(1)},
                {"id": "a", "parent_id": "q", "role": "assistant", "content": "Hello.",
                 "created_at": moment(2), "provenance": provenance("default")},
                {"id": "e", "parent_id": "q", "role": "assistant", "content": "",
                 "status": "error", "created_at": moment(3), "provenance": {
                     **provenance("default"), "error": {"code": "box_unreachable",
                                                        "message": "gone", "hint": ""}}}]}


text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
               max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=5)
MODELS = ["default", "base", "sft-a", "sft-b"]


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path into the provenance and compare parts of a document."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*prefix, index)
            yield from paths(inner, (*prefix, index))


# Keys a provenance may lack, so that an edit can add them where they were not.
KNOWN = [("model",), ("slot",), ("compare_id",), ("compare_mode",), ("timing",),
         ("timing", "ttft_ms"), ("usage",), ("usage", "completion_tokens"), ("box_timing",),
         ("box_timing", "tokens_per_s"), ("error",), ("notices",), ("batch",)]


def editable(document: dict[str, Any]) -> list[tuple]:
    found = [("chat", "compare", *p) for p in paths(document["chat"].get("compare"))]
    found.append(("chat", "compare"))
    for index, message in enumerate(document["messages"]):
        found.append(("messages", index, "provenance"))
        found += [("messages", index, "provenance", *p)
                  for p in {*paths(message.get("provenance")), *KNOWN}]
    return sorted(found, key=repr)


def edit(document: dict[str, Any], path: tuple, value: Any, delete: bool) -> None:
    node = document
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return  # an earlier edit replaced what led here
    if isinstance(node, dict):
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A chat's export, as the gateway writes it, with up to three edits that put a value
    of any type (or nothing) anywhere in its provenance or compare columns: slot, model,
    compare_id, timing, usage, box_timing, the columns' models and leaves."""
    if draw(st.booleans()):
        models = draw(st.lists(st.sampled_from(MODELS), min_size=2, max_size=3))
        document = compare_chat(models, draw(st.integers(1, 2)), blind=draw(st.booleans()))
    else:
        document = plain_chat()
    targets = editable(document)
    ids = [m["id"] for m in document["messages"]]
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(targets))
        last = path[-1]
        if last == "provenance":  # none, anything, or a compare reply's
            value = draw(st.one_of(st.none(), json_values, st.builds(
                provenance, st.sampled_from(MODELS), compare_id=st.sampled_from(
                    ["turn0", "turn1", "x"]), slot=st.integers(0, 3))))
        elif last == "compare":  # anything, or columns over any of its messages
            value = draw(st.one_of(json_values, st.fixed_dictionaries({
                "slots": st.lists(st.fixed_dictionaries({
                    "model": st.sampled_from(MODELS),
                    "leaf_id": st.none() | st.sampled_from(ids)}), min_size=2, max_size=4),
                "blind": st.booleans()})))
        else:
            value = draw(st.one_of(
                json_values,
                st.sampled_from(MODELS),  # a model id where another was (mixed columns)
                st.integers(0, 4),  # a slot out of place
                st.sampled_from(["turn0", "turn1", "0", "12.5", ""])))
        edit(document, path, value, delete=draw(st.booleans()) and isinstance(last, str))
    return document


# --- the gateway and its readers ---------------------------------------------------------


def turns_as_positions(provenances: list[Any]) -> list[Any]:
    """Provenances with each compare id as the order it first appears in (an import gives
    a chat's compare turns new ids, as it gives its messages)."""
    turns: dict[str, int] = {}
    return [{**p, "compare_id": turns.setdefault(p["compare_id"], len(turns))}
            if isinstance(p, dict) and isinstance(p.get("compare_id"), str) else p
            for p in provenances]


def shape(export: dict[str, Any]) -> tuple:
    """An export with its ids as positions (messages by order, compare turns by first
    appearance): an import keeps everything else and gives these new ids."""
    ids = {m["id"]: i for i, m in enumerate(export["messages"])}
    chat = {k: v for k, v in export["chat"].items() if k not in ("id", "active_leaf_id")}
    if chat.get("compare"):
        chat["compare"] = {**chat["compare"], "slots": [
            {**s, "leaf_id": ids.get(s["leaf_id"])} for s in chat["compare"]["slots"]]}
    facts = turns_as_positions([m["provenance"] for m in export["messages"]])
    return (chat, ids.get(export["chat"]["active_leaf_id"]), [
        (m["role"], m["content"], m["status"], p, ids.get(m["parent_id"]))
        for m, p in zip(export["messages"], facts, strict=True)])


def names_a_field(response: httpx.Response) -> None:
    """A refusal says where: each error has its path in the body and a message."""
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, response.text
    for error in detail:
        assert error["loc"][0] == "body" and len(error["loc"]) >= 2, response.text
        assert error["msg"], response.text


async def import_chat(http: httpx.AsyncClient, document: dict[str, Any]) -> httpx.Response:
    response = await http.post("/api/chats/import", json=document)
    assert response.status_code < 500, response.text
    if response.status_code != 201:
        assert response.status_code == 422, response.text
        names_a_field(response)
    return response


async def read_everything(http: httpx.AsyncClient, chat_id: str, *, vote: bool = True
                          ) -> dict[str, Any]:
    """Every reader of a chat (and, with `vote`, a vote on each of its compare turns):
    none answers a 5xx. Returns its JSON export."""
    assert (await http.get(f"/api/chats/{chat_id}")).status_code == 200
    assert (await http.get("/api/chats")).status_code == 200
    exported = await http.get(f"/api/chats/{chat_id}/export", params={"format": "json"})
    assert exported.status_code == 200, exported.text
    markdown = await http.get(f"/api/chats/{chat_id}/export", params={"format": "md"})
    assert markdown.status_code == 200, markdown.text
    turns = {(m["provenance"] or {}).get("compare_id") for m in exported.json()["messages"]}
    for turn in sorted(t for t in turns if isinstance(t, str)) if vote else []:
        for winner in ("0", "tie"):
            answer = await http.post(f"/api/chats/{chat_id}/votes",
                                     json={"compare_id": turn, "winner": winner})
            assert answer.status_code < 500, answer.text
            if answer.status_code != 200:
                assert answer.json()["detail"]["message"], answer.text
    assert (await http.get(f"/api/chats/{chat_id}/votes")).status_code == 200
    assert (await http.get(f"/api/chats/{chat_id}/export")).status_code == 200
    board = await http.get("/api/leaderboard")
    assert board.status_code == 200, board.text
    table = await http.get("/api/leaderboard.csv")
    assert table.status_code == 200, table.text
    return exported.json()


class Gateway:
    """The app in process on its own event loop, for Hypothesis's synchronous examples."""

    def __init__(self, database: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = create_app(load_settings(base_model_path="/models/m",
                                            database_url=f"sqlite+aiosqlite:///{database}"))
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.run(self._lifespan.__aenter__())
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                      base_url="http://localhost")

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def close(self) -> None:
        try:
            self.run(self.http.aclose())
            self.run(self._lifespan.__aexit__(None, None, None))
        finally:
            self.loop.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    running = Gateway(tmp_path / "gate.db")
    yield running
    running.close()


async def round_trip(http: httpx.AsyncClient, document: dict[str, Any]) -> None:
    """The property: taken (201) or refused naming a field (422); once taken, every reader
    answers, the chat holds what was sent, and its JSON export imports to an equal chat."""
    response = await import_chat(http, document)
    if response.status_code != 201:
        assert (await http.get("/api/chats")).json()["chats"] == []  # nothing half-made
        return
    chat_id = response.json()["id"]
    copies = [chat_id]
    try:
        exported = await read_everything(http, chat_id)
        # Stored as sent (the documents' messages are in the order of their times).
        sent = [m.get("provenance") for m in document["messages"]]
        kept = [m["provenance"] for m in exported["messages"]]
        assert turns_as_positions(kept) == turns_as_positions(sent)
        again = await import_chat(http, exported)
        assert again.status_code == 201, again.text
        copies.append(again.json()["id"])
        second = (await http.get(f"/api/chats/{copies[1]}/export",
                                 params={"format": "json"})).json()
        assert shape(second) == shape(exported)
    finally:
        for copy_id in copies:
            assert (await http.delete(f"/api/chats/{copy_id}")).status_code == 204


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(document=documents())
def test_an_import_is_taken_whole_or_refused_by_name_and_every_reader_answers(gateway,
                                                                             document):
    """Issue 24 finding 7, the guard: any export with wrong types anywhere in its
    provenance or compare columns is taken or refused by name, never a 5xx, and a taken
    one never makes a reader answer a 5xx."""
    gateway.run(round_trip(gateway.http, copy.deepcopy(document)))


def test_the_documents_are_mostly_taken_and_cover_the_finding(gateway):
    """The guard above means something only if it imports many of its documents (the
    readers then run) and refuses others; and every export the gateway writes is taken."""
    for document in (compare_chat(["default", "sft-a"]), compare_chat(MODELS[:3], 2),
                     compare_chat(["base", "base"], blind=True), plain_chat()):
        gateway.run(round_trip(gateway.http, document))
        response = gateway.run(gateway.http.post("/api/chats/import", json=document))
        assert response.status_code == 201, response.text
        gateway.run(gateway.http.delete(f"/api/chats/{response.json()['id']}"))
    taken = refused = 0

    @settings(max_examples=60, deadline=None, database=None)
    @given(document=documents())
    def count(document):
        nonlocal taken, refused
        response = gateway.run(gateway.http.post("/api/chats/import", json=document))
        if response.status_code == 201:
            taken += 1
            gateway.run(gateway.http.delete(f"/api/chats/{response.json()['id']}"))
        else:
            refused += 1

    count()
    assert taken >= 10 and refused >= 10, (taken, refused)


# --- the finding's inputs, by name -------------------------------------------------------


async def in_process(database_url: str) -> Any:
    app = create_app(load_settings(base_model_path="/models/m", database_url=database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            http.app = app
            yield http


@pytest.fixture
async def client(database_url):
    """On SQLite and PostgreSQL: what is stored is read back on both."""
    async for http in in_process(database_url):
        yield http


@pytest.fixture
async def sqlite_client(tmp_path):
    """The import's checks come before the database: SQLite alone."""
    async for http in in_process(f"sqlite+aiosqlite:///{tmp_path / 'gate.db'}"):
        yield http


def with_reply(document: dict[str, Any], column: int, changes: dict[str, Any]
               ) -> dict[str, Any]:
    """`document` with the provenance of slot `column`'s first reply changed (None:
    removed)."""
    document = copy.deepcopy(document)
    reply = next(m for m in document["messages"]
                 if (m["provenance"] or {}).get("slot") == column)
    for key, value in changes.items():
        if value is None:
            reply["provenance"].pop(key, None)
        else:
            reply["provenance"][key] = value
    return document


@pytest.mark.parametrize(("changes", "path", "said"), [
    ({"model": 5}, ["provenance", "model"], "valid string"),
    ({"timing": "fast"}, ["provenance", "timing"], "dictionary"),
    ({"timing": {"ttft_ms": "12"}}, ["provenance", "timing", "ttft_ms"], "must be a number"),
    ({"timing": {"ttft_ms": True}}, ["provenance", "timing", "ttft_ms"], "must be a number"),
    ({"usage": [7]}, ["provenance", "usage"], "dictionary"),
    ({"usage": {"completion_tokens": "7"}}, ["provenance", "usage", "completion_tokens"],
     "valid integer"),
    ({"box_timing": {"tokens_per_s": "fast"}}, ["provenance", "box_timing", "tokens_per_s"],
     "must be a number"),
    ({"slot": None}, [], "must say its slot"),
    ({"slot": "0"}, ["provenance", "slot"], "valid integer"),
    ({"slot": 0}, [], "two replies in slot 0"),
    ({"model": None}, [], "must name its model"),
    ({"compare_id": 7}, ["provenance", "compare_id"], "valid string"),
    ({"error": "boom"}, ["provenance", "error"], "dictionary"),
])
async def test_a_wrong_type_in_provenance_is_a_422_naming_its_path(sqlite_client, changes,
                                                                   path, said):
    """Issue 24 finding 7: an imported compare chat whose reply's provenance.model is a
    number, timing text, ttft_ms text, usage a list, or whose slot is missing or mixed, was
    taken, and its Markdown export, a vote on it or the leaderboard then answered 500. Now
    the import refuses it naming the field, and nothing is stored."""
    client = sqlite_client
    document = with_reply(compare_chat(["default", "sft-a"]), 1, changes)
    response = await client.post("/api/chats/import", json=document)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    where = [e for e in errors if e["loc"][:3] in (["body", "messages", 2],
                                                   ["body", "messages"])]
    assert where, errors
    assert any(e["loc"][3:] == path and said in e["msg"] for e in where), errors
    assert (await client.get("/api/chats")).json()["chats"] == []


@pytest.mark.parametrize(("compare", "path"), [
    ({"slots": [{"model": 5, "leaf_id": None}, {"model": "b", "leaf_id": None}]},
     ["slots", 0, "model"]),
    ({"slots": [{"leaf_id": None}, {"model": "b"}]}, ["slots", 0, "model"]),
    ({"slots": "ab"}, ["slots"]),
    ({"slots": [{"model": "a"}]}, ["slots"]),
    ({"slots": [{"model": "a"}, {"model": "b"}], "blind": "yes"}, ["blind"]),
])
async def test_compare_columns_of_the_wrong_shape_are_a_422(sqlite_client, compare, path):
    """Issue 24 finding 7: the compare columns are checked as the gateway writes them."""
    client = sqlite_client
    document = compare_chat(["default", "sft-a"])
    document["chat"]["compare"] = compare
    response = await client.post("/api/chats/import", json=document)
    assert response.status_code == 422, response.text
    assert any(e["loc"] == ["body", "chat", "compare", *path]
               for e in response.json()["detail"]), response.text
    assert (await client.get("/api/chats")).json()["chats"] == []


async def test_every_earlier_export_shape_is_still_taken(client):
    """Issue 24 finding 7: what the gateway wrote before is taken as it was: provenance
    without the newer keys (no box, no notices, no batch), with keys it does not know, with
    nulls where a fact was missing, and none at all; and it is stored as sent."""
    document = compare_chat(["default", "sft-a"])
    first, second = (m for m in document["messages"] if m["role"] == "assistant")
    for key in ("box", "notices", "batch", "box_timing", "shared_base", "run", "step"):
        first["provenance"].pop(key)
    first["provenance"]["future_fact"] = {"anything": [1, "two", None]}
    second["provenance"].update(timing={"ttft_ms": None, "total_ms": 5, "queue_ms": 1.5},
                                usage={"completion_tokens": 3, "cached_tokens": 1},
                                wrapper_version=None, protocol=None)
    document["messages"].append({"id": "x", "parent_id": "m0", "role": "assistant",
                                 "content": "old", "created_at": moment(40)})
    response = await client.post("/api/chats/import", json=document)
    assert response.status_code == 201, response.text
    stored = {m["content"]: m["provenance"] for m in response.json()["messages"]}
    for sent in document["messages"]:
        kept = stored[sent["content"]]
        if sent.get("provenance") is None:
            assert kept is None
        else:
            assert {**kept, "compare_id": None} == {**sent["provenance"], "compare_id": None}
    assert stored["default says 0"]["timing"] == {"ttft_ms": 12.5, "total_ms": 80,
                                                  "chunks": 7}  # 80 stays an integer
    assert isinstance(stored["default says 0"]["timing"]["total_ms"], int)


async def test_an_imported_copy_votes_apart_from_its_original(client):
    """Issue 24 finding 7: an import trusted its compare ids, so a copy's turn was its
    original's, and a vote on one replaced the other's. Each import's turns are its own."""
    document = compare_chat(["default", "sft-a"])
    ids = [(await client.post("/api/chats/import", json=document)).json()["id"]
           for _ in range(2)]
    turns = []
    for chat_id, winner in zip(ids, ("0", "1"), strict=True):
        chat = (await client.get(f"/api/chats/{chat_id}")).json()
        turn = next(m["provenance"]["compare_id"] for m in chat["messages"]
                    if m["provenance"])
        vote = await client.post(f"/api/chats/{chat_id}/votes",
                                 json={"compare_id": turn, "winner": winner})
        assert vote.status_code == 200, vote.text
        turns.append(turn)
    assert turns[0] != turns[1] and "turn0" not in turns
    for chat_id, winner in zip(ids, ("0", "1"), strict=True):
        votes = (await client.get(f"/api/chats/{chat_id}/votes")).json()["votes"]
        assert [v["winner"] for v in votes] == [winner]
    assert (await client.get("/api/leaderboard")).json()["votes"] == 2


# --- what an older version stored unchecked ----------------------------------------------


async def store_old_chat(app: Any, provenances: list[Any], compare: Any) -> tuple[str, list]:
    """A compare chat written straight to the database as an older version could have left
    it: one question, a reply per entry of `provenances` (stored as given), each column's
    leaf its reply where the columns are a list of objects."""
    store = app.state.store
    chat = await store.create_chat(title="Old", model="default")
    question = await store.add_message(chat_id=chat.id, parent_id=None, role="user",
                                       content="Which?")
    replies = []
    async with app.state.database.sessions.begin() as session:
        for index, facts in enumerate(provenances):
            row = Message(id=f"{chat.id[:24]}r{index}", chat_id=chat.id,
                          parent_id=question.id, role="assistant", content=f"reply {index}",
                          status="complete", provenance=facts)
            session.add(row)
            replies.append(row.id)
        row = await session.get(Chat, chat.id)
        row.active_leaf_id = replies[0] if replies else question.id
        compare = copy.deepcopy(compare)
        slots = compare.get("slots") if isinstance(compare, dict) else None
        for slot, leaf in zip(slots if isinstance(slots, list) else [], replies, strict=False):
            if isinstance(slot, dict) and slot.get("leaf_id", "") is None:
                slot["leaf_id"] = leaf
        row.compare = compare
    return chat.id, replies


async def store_vote(app: Any, chat_id: str, compare_id: str, models: Any, winner: str,
                     reply_ids: Any = ()) -> None:
    async with app.state.database.sessions.begin() as session:
        session.add(Vote(id=uuid.uuid4().hex, chat_id=chat_id, compare_id=compare_id,
                         models=models, reply_ids=list(reply_ids), winner=winner,
                         reason=None, blind=False))


OLD_PROVENANCE = [
    # the finding's: a number for a model, text for timing and ttft, a list for usage
    [provenance(5, compare_id="t1", slot=0), provenance("sft-a", compare_id="t1", slot=1)],
    [provenance("a", compare_id="t2", slot=0, timing="fast"),
     provenance("b", compare_id="t2", slot=1, timing={"ttft_ms": "12"},
                usage=[7], box_timing={"tokens_per_s": "many"})],
    # a slot missing, mixed, twice, or out of range
    [provenance("a", compare_id="t3"), provenance("b", compare_id="t3", slot=1)],
    [provenance("a", compare_id="t4", slot="0"), provenance("b", compare_id="t4", slot=1)],
    [provenance("a", compare_id="t5", slot=0), provenance("b", compare_id="t5", slot=0)],
    [provenance("a", compare_id="t6", slot=0), provenance("b", compare_id="t6", slot=2)],
    [provenance("a", compare_id="t7", slot=True), provenance("b", compare_id="t7", slot=1)],
    # one reply alone; a compare id too long for a vote; no provenance object at all
    [provenance("a", compare_id="t8", slot=0)],
    [provenance("a", compare_id="t" * 40, slot=0), provenance("b", compare_id="t" * 40,
                                                              slot=1)],
    [["not", "an", "object"], "text", 7, provenance("c", compare_id=["t9"], slot=0)],
]
OLD_COMPARE = [
    {"slots": [{"model": "a", "leaf_id": None}, {"model": "b", "leaf_id": None}],
     "blind": False},
    {"slots": [{"model": 5, "leaf_id": None}, {"model": "b", "leaf_id": 7}]},
    {"slots": "ab"},
    ["not", "a", "dict"],
    {"blind": "yes"},
]


async def test_what_an_older_version_stored_never_makes_a_500(client):
    """Issue 24 finding 7: provenance and compare columns of the wrong type, stored
    straight in the database (as an import of an older version, or its own code, left
    them), read as absent: the chat, its exports, a vote on its turns, the leaderboard and
    its CSV all answer. Its JSON export leaves the wrong types out, so it imports back,
    or (a compare turn that does not hold together) is refused naming why."""
    for index, provenances in enumerate(OLD_PROVENANCE * 2):
        compare = OLD_COMPARE[index % len(OLD_COMPARE)]
        chat_id, _ = await store_old_chat(client.app, provenances, compare)
        exported = await read_everything(client, chat_id)
        assert all(isinstance(m["provenance"], dict | None) for m in exported["messages"])
        again = await import_chat(client, exported)
        if again.status_code == 201:
            await read_everything(client, again.json()["id"])


async def test_an_unvotable_turn_is_a_400_naming_why(client):
    """Issue 24 finding 7: a vote on a turn whose replies do not say their slot or model
    (an older version's import) answered 500, or stored a vote that broke the leaderboard.
    Now it is a 400 that says what is wrong, and nothing is stored."""
    expected = {"t1": "provenance.model is 5", "t3": "does not say its slot",
                "t4": "provenance.slot is '0'", "t5": "both say slot 0",
                "t6": "slot 1 has no reply", "t7": "provenance.slot is True",
                "t8": "it has 1 reply", "t" * 40: "longer than 32 characters"}
    for provenances in OLD_PROVENANCE:
        chat_id, _ = await store_old_chat(client.app, provenances, OLD_COMPARE[0])
        turn = provenances[-1]["compare_id"]
        if not isinstance(turn, str) or turn not in expected:
            continue
        vote = await client.post(f"/api/chats/{chat_id}/votes",
                                 json={"compare_id": turn, "winner": "0"})
        assert vote.status_code == 400, vote.text
        detail = vote.json()["detail"]
        assert detail["code"] == "unvotable_turn"
        assert detail["message"].startswith("this turn cannot be voted on: ")
        assert expected[turn] in detail["message"], detail
    assert (await client.get("/api/leaderboard")).json()["votes"] == 0


UNREADABLE_VOTES = [
    ([5, "sft-a"], "0"),  # the finding's: a number where a model was
    ([None, "sft-a"], "1"),
    ([["default"], "sft-a"], "tie"),
    ("default", "0"),
    ({"a": 1}, "0"),
    ([], "tie"),
    (["default", "sft-a"], "7"),
    (["default", "sft-a"], "\u0660"),  # an Arabic-Indic zero: int() reads it; no slot
]


async def test_a_stored_vote_that_does_not_read_is_left_out_and_logged_once(client, caplog):
    """Issue 24 finding 7: a stored vote whose model was a number made the leaderboard
    and its CSV answer 500 until its chat was deleted. Now such a vote is left out of the
    leaderboard, the chat's votes and its exports, and said once in the log; voting on the
    turn again replaces it."""
    good_chat, _ = await store_old_chat(client.app, [
        provenance("default", compare_id="g1", slot=0),
        provenance("sft-a", compare_id="g1", slot=1)], OLD_COMPARE[0])
    await store_vote(client.app, good_chat, "g1", ["default", "sft-a"], "1")
    for models, winner in UNREADABLE_VOTES:
        chat_id, replies = await store_old_chat(client.app, [
            provenance("default", compare_id="t1", slot=0),
            provenance("sft-a", compare_id="t1", slot=1)], OLD_COMPARE[0])
        await store_vote(client.app, chat_id, "t1", models, winner, replies)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                board = await client.get("/api/leaderboard")
                assert board.status_code == 200, board.text
                assert board.json()["votes"] == 1
                rows = list(csv.reader(io.StringIO((await client.get(
                    "/api/leaderboard.csv")).text)))
                assert [row[1] for row in rows[1:]] == ["sft-a", "default"]
                votes = await client.get(f"/api/chats/{chat_id}/votes")
                assert votes.json()["votes"] == [], votes.text
                exported = await read_everything(client, chat_id, vote=False)
                assert exported["votes"] == []
        told = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
        assert len(told) == 1, (models, winner, told)
        vote = await client.post(f"/api/chats/{chat_id}/votes",
                                 json={"compare_id": "t1", "winner": "1"})
        assert vote.status_code == 200, vote.text
        assert (await client.get("/api/leaderboard")).json()["votes"] == 2
        assert (await client.delete(f"/api/chats/{chat_id}")).status_code == 204


def test_the_board_leaves_out_any_store_s_unreadable_votes(caplog):
    """Issue 24 finding 7: the leaderboard counts what reads from either store (a compare
    vote, a prompt-set row's vote) and leaves out the rest, logged once per set of them."""

    class Outcomes:
        def __init__(self, votes: list) -> None:
            self.votes = votes

        async def outcomes(self) -> list:
            return list(self.votes)

        vote_outcomes = outcomes

    compare = Outcomes([(["base", "sft"], "1"), *UNREADABLE_VOTES])
    runs = Outcomes([(["base", "sft"], "0"), ([7, "sft"], "1")])

    async def run():
        standings = Standings(compare, runs)
        with caplog.at_level(logging.WARNING):
            first = await standings.board()
            again = await standings.board()
        assert first is again and first.votes == 2 and standings.fits == 1
        assert {s.model for s in first.standings} == {"base", "sft"}

    asyncio.run(run())
    told = [r.getMessage() for r in caplog.records if "leaves out" in r.getMessage()]
    assert len(told) == 1 and "9 stored vote(s)" in told[0], told


async def test_a_vote_on_a_turn_an_older_copy_shares_is_refused(client):
    """Issue 24 finding 7: copies an older version imported share their original's compare
    ids; a vote on the copy's turn no longer replaces the original's."""
    original, _ = await store_old_chat(client.app, [
        provenance("a", compare_id="same", slot=0), provenance("b", compare_id="same",
                                                               slot=1)], OLD_COMPARE[0])
    copy_id, _ = await store_old_chat(client.app, [
        provenance("a", compare_id="same", slot=0), provenance("b", compare_id="same",
                                                               slot=1)], OLD_COMPARE[0])
    first = await client.post(f"/api/chats/{original}/votes",
                              json={"compare_id": "same", "winner": "0"})
    assert first.status_code == 200, first.text
    second = await client.post(f"/api/chats/{copy_id}/votes",
                               json={"compare_id": "same", "winner": "1"})
    assert second.status_code == 400 and "also a turn of chat" in second.text
    votes = (await client.get(f"/api/chats/{original}/votes")).json()["votes"]
    assert [v["winner"] for v in votes] == ["0"]


async def test_readers_leave_out_only_what_is_of_the_wrong_type(client):
    """Issue 24 finding 7: what reads is kept: a reply whose timing is text still shows its
    model, usage and rate in the Markdown export; the wrong key alone is absent."""
    chat_id, _ = await store_old_chat(client.app, [
        provenance("a", compare_id="k1", slot=0, timing="fast"),
        provenance(7, compare_id="k1", slot=1, usage={"completion_tokens": "many"})],
        OLD_COMPARE[0])
    chat = (await client.get(f"/api/chats/{chat_id}")).json()
    facts = [m["provenance"] for m in chat["messages"] if m["role"] == "assistant"]
    assert "timing" not in facts[0] and facts[0]["usage"]["completion_tokens"] == 7
    assert "model" not in facts[1] and facts[1]["usage"] == {}
    assert facts[1]["timing"]["ttft_ms"] == 12.5
    markdown = (await client.get(f"/api/chats/{chat_id}/export")).text
    assert "<th>A · a</th>" in markdown and "<th>B · b</th>" in markdown  # the column's
    assert "*41.7 tok/s · 7 tokens*" in markdown
    assert "*TTFT 12 ms · 41.7 tok/s*" in markdown
