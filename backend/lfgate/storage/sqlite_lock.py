"""One gateway per SQLite database. Two gateways on one file (both default to
~/.local/share/lfgate) each took the other's live replies and runs for leftovers of a crash,
marked them `interrupted` and asked cells twice. A gateway holds an exclusive lock on
`<database>.lock` from opening the database to closing it, so a second one refuses to start,
naming the first. The lock is the kernel's (flock): a gateway that dies, even by SIGKILL,
releases it, so a stale lock never blocks a restart. PostgreSQL is shared safely instead
(lfgate.storage.presence)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from lfgate.storage.errors import StorageError


class DatabaseInUse(StorageError):
    """Another gateway serves from this SQLite database."""

    code = "database_in_use"
    status_code = 409


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        said = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if said.isdigit():
            return f"another gateway (pid {said})"
    return "another gateway"


def _refusal(database: Path, fd: int) -> DatabaseInUse:
    return DatabaseInUse(
        f"{_holder(fd)} is using the database {database}: stop it, or give this gateway its "
        "own LFGATE_DATA_DIR or DATABASE_URL (on PostgreSQL gateways can share one)")


class SqliteLock:
    """The lock on one SQLite database, held from `acquire` to `release`."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DatabaseInUse naming its holder."""
        fd = os.open(lock_path(self.database), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            refusal = _refusal(self.database, fd)
            os.close(fd)
            raise refusal from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the lock


def check_free(database: Path) -> None:
    """Raise DatabaseInUse if a gateway holds `database` now (for `lfgate serve`, to say so
    in one line before it starts; the gateway's own lock is taken when it opens the
    database)."""
    if not lock_path(database).exists():
        return
    probe = SqliteLock(database)
    probe.acquire()
    probe.release()
