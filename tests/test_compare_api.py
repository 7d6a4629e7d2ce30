"""Compare, votes and the leaderboard through the API, on the scripted box double (the real
wrapper loop and protocol 4, no model). The real LlamaFactory path is in
tests/test_compare_gateway.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.rig.saves_tree import make_saves
from tests.test_models_api import BASE, Client, gateway

A, B = "tiny--lora--sft-a", "tiny--lora--sft-b--checkpoint-100"


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    make_saves(tmp_path / "saves", BASE)
    return tmp_path / "saves"


def sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if not any(line.startswith("data: ") for line in lines):  # `retry:`, keep-alive
            continue
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = json.loads(next(line[6:] for line in lines if line.startswith("data: ")))
        events.append((name, data))
    return events


async def compare(http, models, message="hi", **body) -> list[tuple[str, dict]]:
    response = await http.post("/api/compare", json={"message": message, "models": models,
                                                     **body})
    assert response.status_code == 200, response.text
    return sse(response.text)


async def test_three_slots_on_one_base_stream_as_one_batch(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        events = await compare(http, ["default", A, B])
        name, head = events[0]
        assert name == "meta" and head["mode"] == "batch" and not head["blind"]
        assert [s["model"] for s in head["slots"]] == ["default", A, B]
        done = {d["slot"]: d for n, d in events if n == "done"}
        assert done[0]["content"] == "Echo #1 from tiny-base + no adapter: hi"
        assert done[1]["content"] == "Echo #1 from tiny-base + sft-a: hi"
        assert done[2]["content"] == "Echo #1 from tiny-base + checkpoint-100: hi"
        for slot in range(3):
            deltas = "".join(d["text"] for n, d in events if n == "delta" and d["slot"] == slot)
            assert deltas == done[slot]["content"]
            assert done[slot]["batch"]["rows"] == 3 and done[slot]["timing"]["ttft_ms"] > 0
        # The deltas interleave: the slots stream at once, not one after the other.
        order = [d["slot"] for n, d in events if n == "delta"]
        assert order.index(2) < len(order) - 1 - order[::-1].index(0)

        chat = (await http.get(f"/api/chats/{head['chat_id']}")).json()
        assert [s["model"] for s in chat["compare"]["slots"]] == ["default", A, B]
        assert {m["provenance"]["compare_mode"] for m in chat["messages"]
                if m["role"] == "assistant"} == {"batch"}
        users = [m for m in chat["messages"] if m["role"] == "user"]
        assert len(users) == 1  # one question, three answers
        replies = [m for m in chat["messages"] if m["role"] == "assistant"]
        assert {r["provenance"]["slot"] for r in replies} == {0, 1, 2}
        assert {r["provenance"]["compare_id"] for r in replies} == {head["compare_id"]}

        # The next message goes to every slot with that slot's own history.
        again = await compare(http, ["default", A, B], "more", chat_id=head["chat_id"])
        done = {d["slot"]: d for n, d in again if n == "done"}
        assert done[1]["content"] == "Echo #2 from tiny-base + sft-a: more"
        chat = (await http.get(f"/api/chats/{head['chat_id']}")).json()
        by_id = {m["id"]: m for m in chat["messages"]}
        for slot, column in enumerate(chat["compare"]["slots"]):
            path, cursor = [], column["leaf_id"]
            while cursor:
                path.append(by_id[cursor])
                cursor = by_id[cursor]["parent_id"]
            assert [m["content"] for m in reversed(path)][::2] == ["hi", "more"]
            assert all(m["provenance"]["slot"] == slot for m in path if m["role"] ==
                       "assistant")


async def test_stopping_one_slot_leaves_the_others(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    monkeypatch.setenv("LFGATE_SCRIPTED_DELAY_S", "0.01")
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        run = await app.state.compares.start(message="a long one", models=["default", A],
                                             params={}, chat_id=None, blind=False)
        stopped, kept = run.slots
        async for _ in stopped.log.follow():  # wait for the first chunk of the slot to stop
            if stopped.text:
                break
        await http.post(f"/api/chat/{stopped.id}/stop")
        await kept.task
        chat = (await http.get(f"/api/chats/{run.chat_id}")).json()
        status = {m["id"]: m["status"] for m in chat["messages"]}
        assert status[stopped.id] == "stopped" and status[kept.id] == "complete"
        replies = {m["id"]: m for m in chat["messages"]}
        assert replies[kept.id]["provenance"]["finish_reason"] == "stop"
        assert replies[kept.id]["content"].endswith("This is senten")  # all 400 chunks
        assert len(replies[stopped.id]["content"]) < len(replies[kept.id]["content"]) / 2


async def test_votes_tally_and_leaderboard(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        chats = []
        for winner in ("1", "1", "0", "tie"):
            head = (await compare(http, ["default", A], stream=True))[0][1]
            vote = await http.post(f"/api/chats/{head['chat_id']}/votes", json={
                "compare_id": head["compare_id"], "winner": winner, "reason": "clearer"})
            assert vote.status_code == 200, vote.text
            assert vote.json()["models"] == ["default", A]
            chats.append(head)
        # Voting again replaces the vote.
        head = chats[-1]
        await http.post(f"/api/chats/{head['chat_id']}/votes",
                        json={"compare_id": head["compare_id"], "winner": "1"})
        tally = (await http.get(f"/api/chats/{head['chat_id']}/votes")).json()
        assert len(tally["votes"]) == 1 and tally["tally"][A] == {"wins": 1, "losses": 0,
                                                                   "ties": 0}
        board = (await http.get("/api/leaderboard")).json()
        assert board["votes"] == 4
        top, bottom = board["standings"]
        assert (top["model"], top["wins"], top["losses"]) == (A, 3, 1)
        assert bottom["model"] == "default" and top["rating"] > bottom["rating"]
        assert board["win_rate"][A]["default"] == 0.75
        # Four decisive votes: too few for an interval to mean something.
        assert board["min_decisive_votes"] == 5
        assert [(s["decisive_votes"], s["too_few_votes"]) for s in board["standings"]] == [
            (4, True), (4, True)]
        rows = list(csv.reader(io.StringIO((await http.get("/api/leaderboard.csv")).text)))
        assert rows[0][:3] == ["rank", "model", "rating"] and rows[1][1] == A
        assert rows[0][-2:] == ["decisive_votes", "too_few_votes"] and rows[1][-2:] == [
            "4", "true"]

        bad = await http.post(f"/api/chats/{head['chat_id']}/votes",
                              json={"compare_id": head["compare_id"], "winner": "7"})
        assert bad.status_code == 422 and "winner must be one of" in bad.text
        missing = await http.post(f"/api/chats/{head['chat_id']}/votes",
                                  json={"compare_id": "nope", "winner": "0"})
        assert missing.status_code == 422
        assert (await http.get("/api/leaderboard")).json()["votes"] == 4  # nothing changed


async def test_blind_mode_hides_names_until_the_vote(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        events = await compare(http, ["default", A, B], blind=True)
        head = events[0][1]
        assert head["blind"] and all("model" not in s for s in head["slots"])
        assert all("model" not in d for _, d in events)
        vote = (await http.post(f"/api/chats/{head['chat_id']}/votes", json={
            "compare_id": head["compare_id"], "winner": "2"})).json()
        assert sorted(vote["models"]) == sorted(["default", A, B]) and vote["blind"]
        # The first vote revealed the names: a later turn's vote is not blind any more.
        later = await compare(http, vote["models"], "again", chat_id=head["chat_id"])
        second = (await http.post(f"/api/chats/{head['chat_id']}/votes", json={
            "compare_id": later[0][1]["compare_id"], "winner": "0"})).json()
        assert not second["blind"]
        again = (await http.post(f"/api/chats/{head['chat_id']}/votes", json={
            "compare_id": head["compare_id"], "winner": "1"})).json()
        assert again["blind"] is False  # re-voting after the reveal is not blind either


async def test_without_a_shared_base_the_slots_run_side_by_side_or_in_turn(tmp_path,
                                                                            monkeypatch):
    app = gateway(tmp_path, monkeypatch, mode="cli", adapter_path="/models/lora")
    async with Client(app) as http:
        parallel = await compare(http, ["default", "base"],
                                 params={"temperature": 0.3, "system": "Be brief."})
        assert parallel[0][1]["mode"] == "parallel"
        chat = (await http.get(f"/api/chats/{parallel[0][1]['chat_id']}")).json()
        assert (chat["system"], chat["params"]) == ("Be brief.", {"temperature": 0.3})
        same = await compare(http, ["default", "default"])
        assert same[0][1]["mode"] == "sequential"
        assert len([n for n, _ in same if n == "done"]) == 2


@pytest.mark.parametrize("body, status", [
    ({"message": "hi", "models": ["default"]}, 422),
    ({"message": "hi", "models": ["default"] * 5}, 422),
    ({"message": "", "models": ["default", "default"]}, 422),
    ({"message": "hi", "models": ["default", "nope"]}, 404),
])
async def test_bad_compares_are_refused_and_nothing_is_stored(tmp_path, monkeypatch, body,
                                                              status):
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        response = await http.post("/api/compare", json=body)
        assert response.status_code == status, response.text
        assert (await http.get("/api/chats")).json()["chats"] == []


async def test_export_shows_the_replies_side_by_side_with_the_vote(tmp_path, monkeypatch,
                                                                   saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        events = await compare(http, ["default", A], "first question")
        head = events[0][1]
        await http.post(f"/api/chats/{head['chat_id']}/votes", json={
            "compare_id": head["compare_id"], "winner": "1", "reason": "more specific"})
        await compare(http, ["default", A], "second question", chat_id=head["chat_id"])
        md = (await http.get(f"/api/chats/{head['chat_id']}/export?format=md")).text
        assert md.count("<table>") == 2 and "## Turn 2" in md
        assert "<th>A · default</th>" in md and f"<th>B · {A}</th>" in md
        assert "Echo #1 from tiny-base + sft-a: first question" in md
        assert "Echo #2 from tiny-base + no adapter: second question" in md
        assert f"**Vote:** B ({A}): more specific" in md
        exported = (await http.get(f"/api/chats/{head['chat_id']}/export?format=json")).json()
        assert [v["winner"] for v in exported["votes"]] == ["1"]
        imported = (await http.post("/api/chats/import", json=exported)).json()
        assert imported["compare"]["slots"][1]["model"] == A
        leaves = {m["id"] for m in imported["messages"]}
        assert {s["leaf_id"] for s in imported["compare"]["slots"]} <= leaves
        # Issue 24 finding 7: the gateway's own provenance passes the import's checks, and
        # the copy's turns are its own: a vote on one leaves the original's vote alone.
        turn = next(m["provenance"]["compare_id"] for m in imported["messages"]
                    if m["provenance"])
        assert turn != head["compare_id"]
        vote = await http.post(f"/api/chats/{imported['id']}/votes",
                               json={"compare_id": turn, "winner": "0"})
        assert vote.status_code == 200 and vote.json()["models"] == ["default", A]
        original = (await http.get(f"/api/chats/{head['chat_id']}/votes")).json()["votes"]
        assert [v["winner"] for v in original] == ["1"]
