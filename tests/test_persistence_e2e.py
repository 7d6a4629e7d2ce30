"""Conversations survive the gateway: stored as they happen, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from tests.gateway_process import GatewayProcess
from tests.wrapper_process import SPY_DIR

pytestmark = pytest.mark.box

SHORT = {"temperature": 0, "max_new_tokens": 16}
# Greedy, and a prompt the tiny model answers without stopping for well over 1,000 tokens
# (measured: no end-of-sequence within 1,500): a sampled reply may end before the kill.
LONG = {"temperature": 0, "max_new_tokens": 4000}
LONG_PROMPT = "Tell me a very long story"


def local_env(box_python, tiny, database_url) -> dict[str, str]:
    return {"SSH_HOST": "", "CHAT_MODE": "script", "REMOTE_PYTHON": box_python,
            "BASE_MODEL_PATH": tiny["base"], "ADAPTER_PATH": tiny["adapter"],
            "TEMPLATE": tiny["template"], "DATABASE_URL": database_url}


@pytest.fixture(scope="module")
def stored_gateway(box_python, tiny, tmp_path_factory):
    """stored_gateway(database_url): this module's gateway on that kind of database (the
    first test to ask for a kind starts it on its fresh database), for the tests that
    neither kill nor restart it: one start and one model load per kind, not per test. The
    spy records what the model got (`.spy`)."""
    started: dict[str, GatewayProcess] = {}

    def get(database_url: str) -> GatewayProcess:
        kind = database_url.split(":", 1)[0].split("+", 1)[0]
        if kind not in started:
            folder = tmp_path_factory.mktemp(f"stored-{kind}")
            spy = folder / "spy.jsonl"
            env = {**local_env(box_python, tiny, database_url), "PYTHONPATH": str(SPY_DIR),
                   "LFGATE_TEST_SPY": str(spy)}
            started[kind] = GatewayProcess(env, folder)
            started[kind].spy = spy
        return started[kind]

    yield get
    for gateway in started.values():
        assert gateway.stop(), gateway.log.read_text()[-3000:]


def stored_content(gateway: GatewayProcess, chat_id: str, message_id: str) -> str:
    """A message's text as the database holds it now."""
    messages = gateway.http.get(f"/api/chats/{chat_id}").json()["messages"]
    return next((m["content"] for m in messages if m["id"] == message_id), "")


def test_a_reply_cut_by_sigkill_is_kept_and_marked_interrupted(
        box_python, tiny, database_url, tmp_path, reliability):
    # Paced by the spy (~1,000 tokens at >= 6 ms each, so six seconds at least), the reply is
    # still running at the kill, once the database has held two saves of it (about a second
    # after its first chunk: one save a second), however fast or slow the CPU.
    env = {**local_env(box_python, tiny, database_url), "PYTHONPATH": str(SPY_DIR),
           "LFGATE_TEST_TOKEN_DELAY_S": "0.006"}
    gateway = GatewayProcess(env, tmp_path)
    received, meta, first_at = [], None, None
    saves: list[str] = []  # each different text the database held, in turn
    looked_at = 0.0
    try:
        for name, data, at in gateway.stream({"message": LONG_PROMPT, "params": LONG}):
            if name == "meta":
                meta = data
            elif name == "delta":
                received.append(data["text"])
                first_at = first_at or at
                if len(saves) < 2 and at - looked_at >= 0.1:
                    looked_at = at
                    stored = stored_content(gateway, meta["chat_id"], meta["turn_id"])
                    if stored and stored not in saves:
                        saves.append(stored)
                # Past two saves, and every stored character read here too (a save holds
                # what was sent before it, which this reader may not have taken yet).
                if len(saves) == 2 and "".join(received).startswith(saves[-1]):
                    break
            elif name in ("done", "error"):
                pytest.fail(f"the reply ended before the kill: {data}")
    finally:
        gateway.proc.kill()  # SIGKILL mid-stream: no shutdown code runs
        gateway.proc.wait()
        gateway.http.close()
    assert meta is not None and first_at is not None, "the reply never started"

    again = GatewayProcess(env, tmp_path)
    try:
        chat = again.http.get(f"/api/chats/{meta['chat_id']}").json()
        user, reply = chat["messages"]
        assert (user["role"], user["content"], user["status"]) == (
            "user", LONG_PROMPT, "complete")
        assert reply["id"] == meta["turn_id"] and reply["parent_id"] == user["id"]
        assert reply["status"] == "interrupted"
        assert reply["content"], "at most about a second of text may be lost"
        assert "".join(received).startswith(reply["content"])
        assert chat["active_leaf_id"] == reply["id"]
        # The chat goes on after the restart, on the same branch.
        done, _ = again.chat({"message": "go on", "chat_id": meta["chat_id"], "params": SHORT})
        assert done["finish_reason"] in ("stop", "length")
        assert len(again.http.get(f"/api/chats/{meta['chat_id']}").json()["messages"]) == 4
    finally:
        assert again.stop()
    kind = database_url.split(":", 1)[0].split("+", 1)[0]
    reliability.record(
        "gateway", f"The gateway killed with SIGKILL mid-reply ({kind})",
        f"after a restart the user's message is stored complete and the reply "
        f"{reply['status']} with {len(reply['content'])} of the {len(''.join(received))} "
        "characters streamed (saved at least once a second); the chat goes on on its branch")


def test_turns_are_stored_with_provenance_and_listed(stored_gateway, tiny, tmp_path):
    gateway = stored_gateway(f"sqlite+aiosqlite:///{tmp_path / 'lfgate.db'}")
    # The module's other tests may have stored chats on this database before: listed after
    # this test's, as they were.
    earlier = [c["id"] for c in gateway.http.get("/api/chats").json()["chats"]]
    done, events = gateway.chat({"message": "What does LoRA rank do?\nsecond line",
                                 "params": SHORT})
    chat_id = events[0][1]["chat_id"]
    gateway.chat({"message": "And the base?", "model": "base", "params": SHORT})
    chats = gateway.http.get("/api/chats").json()["chats"]
    assert [c["title"] for c in chats[:2]] == ["And the base?", "What does LoRA rank do?"]
    assert [c["id"] for c in chats[2:]] == earlier
    assert [c["id"] for c in gateway.http.get("/api/chats", params={"q": "lora"})
            .json()["chats"] if c["id"] not in earlier] == [chat_id]
    messages = gateway.http.get(f"/api/chats/{chat_id}").json()["messages"]
    reply = messages[1]
    assert reply["content"] == done["content"] and reply["status"] == "complete"
    provenance = reply["provenance"]
    assert provenance["adapter_path"] == tiny["adapter"]
    assert provenance["base_model_path"] == tiny["base"]
    assert provenance["mode"] == "script" and provenance["host"] == "local"
    assert provenance["params"] == SHORT
    assert provenance["wrapper_version"] and provenance["timing"]["total_ms"] > 0
    # A chat's saved system prompt and params apply to its turns; the request's win.
    saved = gateway.http.post("/api/chats", json={"system": "Be brief.",
                                                  "params": {"top_k": 3}}).json()
    gateway.chat({"message": "hi", "chat_id": saved["id"], "params": SHORT})
    stored = gateway.http.get(f"/api/chats/{saved['id']}").json()["messages"][1]
    assert stored["provenance"]["params"] == {"system": "Be brief.", "top_k": 3, **SHORT}
    assert gateway.http.get("/api/chats/nope").status_code == 404
    assert gateway.http.get("/api/chats", params={"limit": 0}).status_code == 422


def test_edit_and_regenerate_make_branches_and_the_model_sees_only_the_active_one(
        stored_gateway, database_url):
    gateway = stored_gateway(database_url)

    def seen() -> list[str]:
        records = [json.loads(line) for line in gateway.spy.read_text().splitlines()]
        return [m["content"] for m in [r for r in records if not r.get("end")][-1]["messages"]]

    a1, events = gateway.chat({"message": "Q1", "params": SHORT})
    chat_id = events[0][1]["chat_id"]
    a1_id = events[0][1]["turn_id"]
    gateway.chat({"message": "Q2", "chat_id": chat_id, "params": SHORT})
    tree = gateway.http.get(f"/api/chats/{chat_id}").json()["messages"]
    q2_id = next(m["id"] for m in tree if m["content"] == "Q2")

    edited, events = gateway.chat_at(f"/api/chats/{chat_id}/edit", {
        "message_id": q2_id, "content": "Q2 edited", "params": SHORT})
    assert edited["finish_reason"] in ("stop", "length"), edited
    assert seen() == ["Q1", a1["content"], "Q2 edited"]  # not Q2 nor its reply

    regenerated, events = gateway.chat_at(f"/api/chats/{chat_id}/regenerate", {
        "message_id": a1_id, "params": SHORT})
    assert regenerated["finish_reason"] in ("stop", "length"), regenerated
    assert seen() == ["Q1"]

    chat = gateway.http.get(f"/api/chats/{chat_id}").json()
    by_id = {m["id"]: m for m in chat["messages"]}
    assert len(by_id) == 7, "nothing was overwritten: Q1 A1 Q2 A2 Q2edited A2edited A1again"
    q1 = next(m for m in chat["messages"] if m["content"] == "Q1")
    replies_to_q1 = [m for m in chat["messages"] if m["parent_id"] == q1["id"]]
    assert len(replies_to_q1) == 2
    leaf = by_id[chat["active_leaf_id"]]
    assert leaf["parent_id"] == q1["id"] and leaf["content"] == regenerated["content"]
    # The next message continues the active branch: Q1, the regenerated reply.
    gateway.chat({"message": "Q3", "chat_id": chat_id, "params": SHORT})
    assert seen() == ["Q1", regenerated["content"], "Q3"]

    wrong = gateway.http.post(f"/api/chats/{chat_id}/edit", json={
        "message_id": a1_id, "content": "x"})
    assert wrong.status_code == 422 and "user message" in wrong.text
    missing = gateway.http.post(f"/api/chats/{chat_id}/regenerate", json={
        "message_id": "nope"})
    assert missing.status_code == 404
