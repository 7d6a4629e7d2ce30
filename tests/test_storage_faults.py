"""The database locked or full, injected for real against a real `lfgate serve` on the
scripted box double (so storage is the only thing under test): each gives its own clear error
(a 503 naming the cause, never the SQL or a path), nothing already stored is lost, and the
next request, once the fault is gone, is served without a restart of the gateway.

- SQLite locked: another process holds `BEGIN EXCLUSIVE` on the gateway's lfgate.db past its
  busy timeout, while a chat is sent, and while a reply streams (the reply reaches the client
  whole, reads show it whole, and it is saved once the lock is released).
- SQLite full: LFGATE_DATA_DIR on a small tmpfs mounted here, filled, then freed.
- PostgreSQL locked: another session holds `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` past the
  gateway's lock_timeout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lfgate.storage.faults import LOCK_WAIT_S
from tests.gateway_process import GatewayProcess, sse_events
from tests.rig.waiting import wait_until
from tests.test_models_api import eventually
from tests.ui_rig import start_scripted_gateway

LEAKS = ("INSERT", "UPDATE ", "SELECT", "[SQL", "sqlite3", "asyncpg", "lfgate.db", "/tmp",
         "Traceback")
HANG_S = LOCK_WAIT_S + 20  # far past the lock wait: an answer later than this is a hang
SQLITE_HOLDER = r"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""
POSTGRES_HOLDER = r"""
import asyncio, sys
import asyncpg

async def main():
    db = await asyncpg.connect(sys.argv[1])
    await db.execute("BEGIN")
    await db.execute("LOCK TABLE chats, messages IN ACCESS EXCLUSIVE MODE")
    print("held", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await db.execute("ROLLBACK")
    await db.close()

asyncio.run(main())
"""


class Holder:
    """Another process holding a lock on the database until `release()` (or the end of the
    `with`, whatever happens in it)."""

    def __init__(self, script: str, target: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", script, target], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "held":
            self.kill()
            raise AssertionError(f"the lock holder did not take its lock: {line!r} "
                                 f"{self.proc.stderr.read()[-2000:]}")

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            try:
                assert self.proc.wait(20) == 0, self.proc.stderr.read()[-2000:]
            finally:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.release()
        finally:
            self.kill()


def send(gateway: GatewayProcess, message: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = gateway.http.post("/api/chat", json={"message": message, "stream": False},
                                 timeout=HANG_S + 10)
    return response, time.monotonic() - started


def everything(gateway: GatewayProcess) -> dict[str, Any]:
    """Every chat and its messages, as the API gives them back."""
    listing = gateway.http.get("/api/chats", params={"limit": 500})
    assert listing.status_code == 200, listing.text
    return {item["id"]: gateway.http.get(f"/api/chats/{item['id']}").json()
            for item in listing.json()["chats"]}


def refused_clearly(response: httpx.Response, elapsed_s: float, code: str, *words: str) -> str:
    """A 503 with `code` and the cause in its message, in time, leaking nothing; its message."""
    assert response.status_code == 503, response.text
    detail = response.json()["detail"]
    assert detail["code"] == code, detail
    assert all(word in detail["message"] for word in words), detail
    assert not [leak for leak in LEAKS if leak in response.text], response.text
    assert elapsed_s < HANG_S, elapsed_s
    return detail["message"]


def stored_rows(db_path: Path, chat_id: str) -> list[tuple[str, str, str]]:
    """(role, status, content) of a chat's messages as the file holds them, read by another
    connection (not through the gateway)."""
    with contextlib.closing(sqlite3.connect(db_path, timeout=30)) as db:
        return db.execute("SELECT role, status, content FROM messages WHERE chat_id = ? "
                          "ORDER BY created_at, id", (chat_id,)).fetchall()


def db_file(gateway: GatewayProcess) -> Path:
    """The SQLite file of a gateway started by start_scripted_gateway (in its folder)."""
    return gateway.log.parent / "lfgate.db"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A scripted gateway on SQLite whose long replies take a few seconds."""
    gateway = start_scripted_gateway(tmp_path / "gateway", delay_s=0.01)
    yield gateway
    gateway.stop()


def test_sqlite_locked_by_another_process_refuses_a_send_then_recovers(gateway, reliability):
    db_path = db_file(gateway)
    first, _ = send(gateway, "stored before the lock")
    assert first.status_code == 200, first.text
    before = everything(gateway)
    with Holder(SQLITE_HOLDER, str(db_path)):
        response, elapsed = send(gateway, "sent while locked")
        message = refused_clearly(response, elapsed, "storage_unavailable",
                                  "locked by another process")
        assert elapsed >= LOCK_WAIT_S * 0.9, elapsed  # it waited the busy timeout first
        assert response.headers["Retry-After"] == str(int(LOCK_WAIT_S))
        assert everything(gateway) == before  # reading goes on, and nothing was stored
    after, _ = send(gateway, "sent after the lock")  # the same gateway: no restart
    assert after.status_code == 200 and "sent after the lock" in after.json()["content"]
    now = everything(gateway)
    assert {k: now[k] for k in before} == before and len(now) == len(before) + 1
    reliability.record(
        "storage", f"SQLite: another process holds BEGIN EXCLUSIVE on lfgate.db past the "
        f"{LOCK_WAIT_S:g} s busy timeout while a chat is sent",
        f"503 storage_unavailable with Retry-After {response.headers['Retry-After']}: "
        f"\"{message}\"; nothing stored, chats still readable meanwhile; once the lock is "
        "released the next send is answered (no restart), earlier chats intact")


def test_sqlite_locked_while_a_reply_streams_the_reply_arrives_whole_and_is_saved_after(
        gateway, reliability):
    db_path = db_file(gateway)
    texts: list[str] = []
    ended: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        response = stack.enter_context(gateway.http.stream(
            "POST", "/api/chat", json={"message": "a long reply please"}, timeout=HANG_S + 30))
        assert response.status_code == 200
        holder = None
        for name, data, _ in sse_events(response):
            if name == "meta":
                chat_id = data["chat_id"]
            elif name == "delta":
                texts.append(data["text"])
                if holder is None:  # the reply has begun: lock the database under it
                    holder = stack.enter_context(Holder(SQLITE_HOLDER, str(db_path)))
            elif name in ("done", "error"):
                ended = {"event": name, **data}
                break
        assert holder is not None
        streamed = "".join(texts)
        assert ended["event"] == "done", ended  # the reply reached the client, to its end
        assert ended["content"] == streamed and ended["finish_reason"] == "stop"
        # While the lock is still held: the file does not have it yet, reads show it whole.
        in_file = stored_rows(db_path, chat_id)
        assert in_file[1][0] == "assistant" and in_file[1][1:] != ("complete", streamed)
        shown = gateway.http.get(f"/api/chats/{chat_id}").json()["messages"]
        assert [(m["role"], m["status"], m["content"]) for m in shown] == [
            ("user", "complete", "a long reply please"), ("assistant", "complete", streamed)]
        holder.release()
    saved = wait_until(lambda: stored_rows(db_path, chat_id) == [
        ("user", "complete", "a long reply please"), ("assistant", "complete", streamed)],
        "the reply saved once the lock was released")
    assert saved
    after, _ = send(gateway, "and the next one")
    assert after.status_code == 200, after.text
    assert len(everything(gateway)) == 2
    reliability.record(
        "storage", "SQLite: another process holds BEGIN EXCLUSIVE on lfgate.db while a reply "
        f"streams (a save of the reply waits past the {LOCK_WAIT_S:g} s busy timeout)",
        "the reply streams on to its end (done, its text exactly what streamed); reading the "
        "chat meanwhile shows it whole; once the lock is released it is saved complete, once, "
        "identical to what streamed; the next send is answered (no restart)")


# --- A full disk ---------------------------------------------------------------------------

TMPFS_BYTES = 8 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of TMPFS_BYTES mounted for this test, unmounted after whatever happened."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700",
                           "tmpfs", str(mount)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        reason = f"cannot mount a tmpfs (needs root): {made.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of `folder`'s disk."""
    filler = folder / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        while True:  # the last partial block
            try:
                out.write(b"\0" * 512)
            except OSError:
                break
    return filler


def test_sqlite_full_disk_refuses_a_send_keeps_what_is_stored_and_recovers(
        tmp_path, small_disk, reliability):
    gateway = start_scripted_gateway(tmp_path / "gateway",
                                     env={"DATABASE_URL": "", "LFGATE_DATA_DIR": str(small_disk)})
    try:
        db_path = small_disk / "lfgate.db"
        first, _ = send(gateway, "stored before the disk filled")
        assert first.status_code == 200, first.text
        assert db_path.exists()  # the database is the one on the small disk
        before = everything(gateway)
        # The write-ahead log back to empty (as after any checkpoint), so the next write
        # needs new space on the disk rather than reusing the log's.
        with contextlib.closing(sqlite3.connect(db_path, timeout=30)) as db:
            assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        filler = fill(small_disk)
        response, elapsed = send(gateway, "sent while the disk is full " + "x" * 20000)
        message = refused_clearly(response, elapsed, "storage_full", "disk", "full")
        assert everything(gateway) == before  # reading goes on, nothing lost or half-stored
        filler.unlink()
        after, _ = send(gateway, "sent after space was freed")  # no restart
        assert after.status_code == 200 and "space was freed" in after.json()["content"]
        now = everything(gateway)
        assert {k: now[k] for k in before} == before and len(now) == len(before) + 1
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reliability.record(
        "storage", "SQLite: the disk holding LFGATE_DATA_DIR is full (a tmpfs filled to its "
        "last byte) while a chat is sent",
        f"503 storage_full: \"{message}\"; the chats already stored read back intact; once "
        "space is freed the next send is answered (no restart); the file passes "
        "integrity_check")


# --- PostgreSQL ----------------------------------------------------------------------------

def test_postgres_locked_by_another_session_is_a_clear_error_not_a_hang(
        tmp_path, postgres_database, reliability):
    gateway = start_scripted_gateway(tmp_path / "gateway",
                                     env={"DATABASE_URL": postgres_database})
    try:
        first, _ = send(gateway, "stored before the lock")
        assert first.status_code == 200, first.text
        before = everything(gateway)
        plain = postgres_database.replace("postgresql+asyncpg://", "postgresql://")
        with Holder(POSTGRES_HOLDER, plain):
            response, elapsed = send(gateway, "sent while locked")
            message = refused_clearly(response, elapsed, "storage_unavailable",
                                      "locked by another session")
            started = time.monotonic()
            reading = gateway.http.get("/api/chats", timeout=HANG_S + 10)
            read_message = refused_clearly(reading, time.monotonic() - started,
                                           "storage_unavailable", "locked by another session")
        assert everything(gateway) == before  # nothing stored, nothing lost
        after, _ = send(gateway, "sent after the lock")  # no restart
        assert after.status_code == 200 and "after the lock" in after.json()["content"]
        assert len(everything(gateway)) == len(before) + 1
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]
    assert message == read_message
    reliability.record(
        "storage", "PostgreSQL: another session holds LOCK TABLE chats, messages IN ACCESS "
        f"EXCLUSIVE MODE past the gateway's {LOCK_WAIT_S:g} s lock_timeout; a chat is sent, "
        "the chats are read",
        f"both 503 storage_unavailable (no hang): \"{message}\"; nothing stored; once the "
        "lock is released the next send is answered (no restart), earlier chats intact")


# --- The pieces, without a gateway ---------------------------------------------------------

class Refused(Exception):
    """Stands in for the driver's error while the database refuses."""


async def test_saves_refused_for_a_while_wait_merge_in_order_and_are_written_once():
    from datetime import UTC, datetime

    from lfgate.storage.chat_store import MessageRecord
    from lfgate.storage.deferred import DeferredSaves
    from lfgate.storage.faults import StorageUnavailable

    refusing, written = True, []

    async def write(message_id: str, values: dict[str, Any]) -> None:
        if refusing:
            raise Refused
        written.append((message_id, dict(values)))

    saves = DeferredSaves(write, lambda exc: StorageUnavailable("locked")
                          if isinstance(exc, Refused) else None, retry_s=0.01)
    await saves.save("r1", {"content": "a", "status": "streaming"})
    await saves.save("r1", {"content": "ab"})
    await saves.save("r1", {"content": "abc", "status": "complete"})
    assert len(saves) == 1 and written == []
    stored = MessageRecord("r1", "c", "u", "assistant", "", "streaming",
                           datetime.now(UTC), None)
    assert saves.view(stored).content == "abc" and saves.view(stored).status == "complete"
    refusing = False

    async def drained() -> bool:
        return len(saves) == 0

    await eventually(drained, 10)
    assert written == [("r1", {"content": "abc", "status": "complete"})]  # once, the newest
    assert saves.view(stored) == stored
    await saves.save("r1", {"content": "abcd"})  # the database takes it: written at once
    assert written[-1] == ("r1", {"content": "abcd"})

    async def broken(message_id: str, values: dict[str, Any]) -> None:
        raise ValueError("a bug, not the database refusing")

    with pytest.raises(ValueError):  # not a fault: raised, not kept
        await DeferredSaves(broken, lambda exc: None).save("r2", {"content": "x"})


async def test_a_save_still_refused_at_shutdown_is_said_not_waited_for_ever(caplog):
    from lfgate.storage.deferred import DeferredSaves
    from lfgate.storage.faults import StorageUnavailable

    async def write(message_id: str, values: dict[str, Any]) -> None:
        raise Refused

    saves = DeferredSaves(write, lambda exc: StorageUnavailable("locked"), retry_s=0.01)
    await saves.save("r1", {"content": "a"})
    started = time.monotonic()
    await saves.close(timeout_s=1)
    assert time.monotonic() - started < 5
    assert "1 reply(ies) could not be saved before shutdown" in caplog.text


def test_driver_errors_become_faults_by_cause_and_others_stay_bugs(tmp_path):
    from sqlalchemy.exc import DBAPIError, IntegrityError

    from lfgate.storage.faults import StorageFull, StorageUnavailable, storage_fault

    class PgError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__("detail with SQL and values")
            self.sqlstate = sqlstate

    def wrapped(orig: Exception) -> DBAPIError:
        return DBAPIError("UPDATE messages SET content=?", ("secret",), orig)

    def busy(code: int, name: str) -> sqlite3.Error:
        error = sqlite3.OperationalError(name)
        error.sqlite_errorcode, error.sqlite_errorname = code, name
        return error

    cases = {
        "55P03": (StorageUnavailable, "locked by another session"),
        "53100": (StorageFull, "disk holding the database is full"),
        "53300": (StorageUnavailable, "no connection to spare"),
        "08006": (StorageUnavailable, "cannot be reached"),
    }
    for sqlstate, (kind, words) in cases.items():
        fault = storage_fault(wrapped(PgError(sqlstate)))
        assert type(fault) is kind and words in fault.message, (sqlstate, fault)
        assert "secret" not in fault.message and "UPDATE" not in fault.message
    assert storage_fault(wrapped(PgError("23505"))) is None  # a unique violation: a bug
    assert storage_fault(IntegrityError("INSERT", (), PgError("23505"))) is None
    assert isinstance(storage_fault(wrapped(busy(5, "SQLITE_BUSY"))), StorageUnavailable)
    assert isinstance(storage_fault(wrapped(busy(13, "SQLITE_FULL"))), StorageFull)
    assert isinstance(storage_fault(wrapped(busy(8, "SQLITE_READONLY"))), StorageUnavailable)
    # An I/O error on a disk with room is not "full"; on one without, it is.
    io_error = busy(10 | (3 << 8), "SQLITE_IOERR_WRITE")
    assert type(storage_fault(wrapped(io_error), tmp_path)) is StorageUnavailable


async def test_the_app_answers_driver_errors_by_cause_in_both_shapes(tmp_path, monkeypatch):
    """The handler, in process: a fault is a 503 in our shape and in OpenAI's; any other
    database error a 500 that shows no SQL, no values; nothing else changes."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from tests.test_models_api import Client, gateway

    def locked() -> OperationalError:
        error = sqlite3.OperationalError("database is locked")
        error.sqlite_errorcode, error.sqlite_errorname = 5, "SQLITE_BUSY"
        return OperationalError("INSERT INTO chats VALUES (?)", ("secret title",), error)

    failure: list[Exception] = [locked()]

    async def refuse(**_: Any) -> None:
        raise failure[0]

    app = gateway(tmp_path, monkeypatch, store_api_chats=True)
    async with Client(app) as http:
        monkeypatch.setattr(app.state.store, "create_chat", refuse)
        ours = await http.post("/api/chat", json={"message": "secret title", "stream": False})
        assert ours.status_code == 503 and ours.headers["retry-after"] == "5"
        assert ours.json()["detail"]["code"] == "storage_unavailable"
        openai = await http.post("/v1/chat/completions", json={
            "model": "default", "messages": [{"role": "user", "content": "secret title"}]})
        assert openai.status_code == 503, openai.text
        error = openai.json()["error"]
        assert (error["code"], error["type"]) == ("storage_unavailable", "server_error")
        assert "locked by another process" in error["message"]
        failure[0] = IntegrityError("INSERT INTO chats VALUES (?)", ("secret title",),
                                    sqlite3.IntegrityError("UNIQUE constraint failed"))
        bug = await http.post("/api/chat", json={"message": "secret title", "stream": False})
        assert bug.status_code == 500 and bug.json()["detail"]["code"] == "storage_error"
        for answer in (ours, openai, bug):
            assert not [leak for leak in (*LEAKS, "secret", "UNIQUE") if leak in answer.text]
        assert (await http.get("/api/chats")).status_code == 200  # reads never touched
