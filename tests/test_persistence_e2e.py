"""Conversations survive the gateway: stored as they happen, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.gateway_process import GatewayProcess

pytestmark = pytest.mark.box

SHORT = {"temperature": 0, "max_new_tokens": 16}
LONG = {"temperature": 1.0, "max_new_tokens": 4000}


def local_env(box_python, tiny, database_url) -> dict[str, str]:
    return {"SSH_HOST": "", "CHAT_MODE": "script", "REMOTE_PYTHON": box_python,
            "BASE_MODEL_PATH": tiny["base"], "ADAPTER_PATH": tiny["adapter"],
            "TEMPLATE": tiny["template"], "DATABASE_URL": database_url}


def test_a_reply_cut_by_sigkill_is_kept_and_marked_interrupted(
        box_python, tiny, database_url, tmp_path):
    env = local_env(box_python, tiny, database_url)
    gateway = GatewayProcess(env, tmp_path)
    received, meta, first_at = [], None, None
    try:
        for name, data, at in gateway.stream({"message": "Tell me a very long story",
                                              "params": LONG}):
            if name == "meta":
                meta = data
            elif name == "delta":
                received.append(data["text"])
                first_at = first_at or at
                if at - first_at > 2.5:  # past two saves
                    break
        gateway.proc.kill()  # SIGKILL mid-stream: no shutdown code runs
        gateway.proc.wait()
    finally:
        gateway.http.close()
    assert meta is not None and first_at is not None, "the reply never started"

    again = GatewayProcess(env, tmp_path)
    try:
        chat = again.http.get(f"/api/chats/{meta['chat_id']}").json()
        user, reply = chat["messages"]
        assert (user["role"], user["content"], user["status"]) == (
            "user", "Tell me a very long story", "complete")
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


def test_turns_are_stored_with_provenance_and_listed(box_python, tiny, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'lfgate.db'}"
    gateway = GatewayProcess(local_env(box_python, tiny, url), tmp_path)
    try:
        done, events = gateway.chat({"message": "What does LoRA rank do?\nsecond line",
                                     "params": SHORT})
        chat_id = events[0][1]["chat_id"]
        gateway.chat({"message": "And the base?", "model": "base",
                                     "params": SHORT})
        chats = gateway.http.get("/api/chats").json()["chats"]
        assert [c["title"] for c in chats] == ["And the base?", "What does LoRA rank do?"]
        assert [c["id"] for c in gateway.http.get("/api/chats", params={"q": "lora"})
                .json()["chats"]] == [chat_id]
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
    finally:
        assert gateway.stop()
