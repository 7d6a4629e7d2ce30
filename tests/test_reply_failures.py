"""Issue 24 finding 6: a reply is never lost without a word. Whatever fails under a reply (text
the database cannot store, its chat deleted while it streams, a save that raises), its stream
ends with `done` or `error`, what can be stored is, and the gateway's log says why; no task
exception goes unread (tests/gateway_process.py's guards fail any of these tests otherwise).
Over a real `lfgate serve` on the scripted box, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.gateway_process import sse_events
from tests.test_streams import wait_for
from tests.ui_rig import start_scripted_gateway

PLANT_DIR = Path(__file__).parent / "rig" / "plant"
# What the scripted box says to "unstorable" (a NUL, then an unpaired surrogate), as kept.
KEPT = "before\ufffdafter, then \ufffd alone, and the end."


def _reply(gateway, chat_id: str) -> dict:
    replies = [m for m in gateway.http.get(f"/api/chats/{chat_id}").json()["messages"]
               if m["role"] == "assistant"]
    assert len(replies) == 1, replies
    return replies[0]


def test_text_no_database_can_store_is_kept_and_the_stream_ends_done(
        tmp_path, gateway_database_url, reliability):
    """A reply holding U+0000 ended on PostgreSQL with neither `done` nor `error` and stayed
    `streaming` and empty. Now what the box says is made storable where it comes in (NUL and
    unpaired surrogates become U+FFFD), so what streams is what is stored, on both."""
    gateway = start_scripted_gateway(tmp_path / "gw",
                                     env={"DATABASE_URL": gateway_database_url})
    try:
        done, events = gateway.chat({"message": "say something unstorable"})
        names = [name for name, _ in events]
        assert names[-1] == "done", events
        streamed = "".join(data["text"] for name, data in events if name == "delta")
        assert done["content"] == streamed == KEPT
        reply = _reply(gateway, events[0][1]["chat_id"])
        assert (reply["status"], reply["content"]) == ("complete", KEPT)
        exported = gateway.http.get(f"/api/chats/{events[0][1]['chat_id']}/export",
                                    params={"format": "md"})
        assert exported.status_code == 200 and KEPT in exported.text
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]
    backend = gateway_database_url.split(":", 1)[0].split("+")[0]
    reliability.record(
        "streams", f"the box's reply holds U+0000 and \\ud800 ({backend})",
        "the stream ends `done`; stored `complete` with U+FFFD in their place, as streamed")


def test_a_chat_deleted_while_its_reply_streams_ends_the_stream_with_an_error(
        tmp_path, gateway_database_url, reliability):
    """On SQLite the stream of a reply whose chat was deleted just stopped, and the task's
    exception was never read. Now the delete stops the reply on the box, and the stream ends
    with `chat_deleted`."""
    gateway = start_scripted_gateway(tmp_path / "gw", delay_s=0.01,
                                     env={"DATABASE_URL": gateway_database_url})
    try:
        chat_id: list[str] = []
        deleted = threading.Event()

        def delete_when_started() -> None:
            wait_for(lambda: chat_id, "the reply started")
            with httpx.Client(base_url=gateway.url) as other:
                assert other.delete(f"/api/chats/{chat_id[0]}").status_code == 204
            deleted.set()

        deleter = threading.Thread(target=delete_when_started)
        deleter.start()
        events = []
        with gateway.http.stream("POST", "/api/chat", json={
                "message": "a long one", "stream": True}) as response:
            for name, data, _ in sse_events(response):
                events.append((name, data))
                if name == "delta" and not chat_id:
                    chat_id.append(events[0][1]["chat_id"])
        deleter.join()
        assert deleted.is_set()
        name, data = events[-1]
        assert name == "error" and data["code"] == "chat_deleted", events[-3:]
        assert gateway.http.get(f"/api/chats/{chat_id[0]}").status_code == 404
        # The box stopped too: the next message is answered at once, not after 400 chunks.
        done, _ = gateway.chat({"message": "hello again"})
        assert done["content"].startswith("Echo #1")
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]
    assert "was deleted while it streamed" in gateway.log.read_text()
    backend = gateway_database_url.split(":", 1)[0].split("+")[0]
    reliability.record(
        "streams", f"its chat deleted while the reply streams ({backend})",
        "the reply stops on the box; the stream ends `error` chat_deleted; logged; no task "
        "exception unread")


def test_a_save_that_raises_ends_the_stream_with_an_error_and_is_logged(tmp_path,
                                                                        reliability):
    """The class: any failure under a reply that is not the box's (a bug, a database that
    refuses what it holds) ends its stream with `error`, keeps what it can and logs the
    traceback. Planted: the save of a finished reply raises (tests/rig/plant)."""
    gateway = start_scripted_gateway(tmp_path / "gw", env={
        "PYTHONPATH": str(PLANT_DIR), "LFGATE_TEST_PLANT": "save_fails"})
    try:
        _, events = gateway.chat({"message": "hello"})
        name, data = events[-1]
        assert name == "error" and data["code"] == "reply_failed", events[-3:]
        assert "RuntimeError" in data["message"] and "planted" not in data["message"]
        reply = _reply(gateway, events[0][1]["chat_id"])
        assert reply["status"] == "error"
        assert reply["content"].startswith("Echo #1"), reply  # what arrived is kept
        assert reply["provenance"]["error"]["code"] == "reply_failed"
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]
    log = gateway.log.read_text()
    assert "planted: the save of a finished reply fails" in log  # the traceback, logged
    reliability.record(
        "streams", "the save of a finished reply raises (planted)",
        "the stream ends `error` reply_failed (no internals in it); stored `error` with the "
        "text that arrived; the traceback in the gateway's log")
