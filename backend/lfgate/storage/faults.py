"""The database refusing for a while, in words a user can act on.

SQLite locked by another process (past the busy timeout) or its disk full, PostgreSQL locked
by another session (past the lock timeout), out of connections or out of reach: each becomes
a StorageError with its own code and a message naming the cause, never the SQL, its values
or a path. The app answers them with 503 (lfgate.app); a reply's saves wait them out
(lfgate.storage.deferred). Anything else the driver raises is a bug, not a fault: left alone.

    StorageError
    ├── StorageFault        503
    │   ├── StorageUnavailable  storage_unavailable  (locked, read-only, unreachable, I/O)
    │   └── StorageFull         storage_full         (no space left for the database)
    └── StorageFailed       500  storage_error       (anything else: a bug, in the log)
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from lfgate.storage.errors import StorageError

# How long a statement waits for a lock another process or session holds before it is a
# StorageUnavailable (SQLite's busy timeout; PostgreSQL's lock_timeout).
LOCK_WAIT_S = 5.0
FULL_BELOW_BYTES = 64 * 1024  # an I/O error on a disk with less free than this: it is full
NOT_SAVED = "the request was not completed"


class StorageFault(StorageError):
    """The database cannot take this request now; the next one may succeed. `cause` says
    why; the message adds what became of the request and what to do."""

    status_code = 503
    code = "storage_unavailable"
    retry_after_s: int | None = None

    def __init__(self, cause: str, then: str = "") -> None:
        super().__init__(f"{cause}; {NOT_SAVED}" + (f": {then}" if then else ""))
        self.cause = cause


class StorageUnavailable(StorageFault):
    retry_after_s = int(LOCK_WAIT_S)


class StorageFull(StorageFault):
    code = "storage_full"


class StorageFailed(StorageError):
    """The database failed in a way that is not one of its passing states: a bug."""

    status_code = 500


def _sqlite_fault(error: sqlite3.Error, folder: Path | None) -> StorageFault | None:
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageUnavailable(
            f"the database is locked by another process (waited {LOCK_WAIT_S:g} s for it)",
            "retry when it is free")
    if primary == sqlite3.SQLITE_FULL or (primary == sqlite3.SQLITE_IOERR
                                          and _nearly_full(folder)):
        return StorageFull("the disk holding the database is full",
                           "free space on it (LFGATE_DATA_DIR or DATABASE_URL says where), "
                           "then retry")
    if primary == sqlite3.SQLITE_READONLY:
        return StorageUnavailable("the database cannot be written (its file or folder is "
                                  "read-only)")
    if primary == sqlite3.SQLITE_IOERR:
        return StorageUnavailable("the disk holding the database failed to read or write "
                                  "(an I/O error)")
    if primary == sqlite3.SQLITE_CANTOPEN:
        return StorageUnavailable("the database file cannot be opened")
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StorageUnavailable("the database file is damaged", "restore it from a backup")
    return None


def _nearly_full(folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < FULL_BELOW_BYTES


# PostgreSQL's SQLSTATEs (Appendix A of its manual) that are a state of the server, not a bug.
_PG_LOCKED = {"55P03": f"the database is locked by another session (waited {LOCK_WAIT_S:g} s "
                        "for it)",
              "40P01": "the change deadlocked with another session's",
              "40001": "the change conflicted with another session's"}
_PG_FULL = {"53100"}  # disk_full
_PG_UNREACHABLE = {"53300": "has no connection to spare", "53200": "is out of memory",
                   "57P01": "is shutting down", "57P02": "is shutting down",
                   "57P03": "is starting or stopping", "57014": "took too long to answer"}


def _postgres_fault(sqlstate: str) -> StorageFault | None:
    if sqlstate in _PG_LOCKED:
        return StorageUnavailable(_PG_LOCKED[sqlstate], "retry when it is free"
                                  if sqlstate == "55P03" else "retry")
    if sqlstate in _PG_FULL:
        return StorageFull("the disk holding the database is full",
                           "free space on the database server, then retry")
    if sqlstate in _PG_UNREACHABLE:
        return StorageUnavailable(f"the database server {_PG_UNREACHABLE[sqlstate]}")
    if sqlstate.startswith("08"):  # connection_exception
        return StorageUnavailable("the database server cannot be reached")
    return None


def storage_fault(exc: BaseException, folder: Path | None = None) -> StorageFault | None:
    """`exc` (as SQLAlchemy raised it) as a fault with a clear message, or None when it is not
    one of the database's passing states. `folder`: where a SQLite database lives, to tell a
    full disk behind an I/O error."""
    if isinstance(exc, StorageFault):
        return exc
    if isinstance(exc, PoolTimeout):
        return StorageUnavailable("every connection to the database is busy",
                                  "retry in a moment")
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        return _sqlite_fault(orig, folder)
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _postgres_fault(sqlstate)
    cause = getattr(orig, "__cause__", None) or orig
    if isinstance(cause, ConnectionError | TimeoutError) or exc.connection_invalidated:
        return StorageUnavailable("the database server cannot be reached")
    return None
