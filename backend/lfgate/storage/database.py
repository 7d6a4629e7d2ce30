"""The database: one async engine per gateway, migrated to the latest schema when opened.

SQLite (the default) runs in WAL mode with foreign keys on; PostgreSQL through asyncpg.
An older database is upgraded in place, never dropped.

A database another process or session holds locked is waited for LOCK_WAIT_S (SQLite's busy
timeout, PostgreSQL's lock_timeout), then the statement fails, and `fault` names why
(lfgate.storage.faults): a clear error at once rather than a request that hangs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

import lfgate.storage.migrations as migrations
from lfgate.storage.faults import LOCK_WAIT_S, StorageFault, storage_fault
from lfgate.storage.sqlite_lock import SqliteLock

HEAD = "head"


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'lfgate.db'}"


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["connection"] = connection
    return config


def _connect_args(url: str) -> dict[str, object]:
    """How long a statement waits for another's lock before it fails (instead of hanging):
    SQLite's busy timeout; PostgreSQL's lock_timeout (its default waits for ever)."""
    if url.startswith("sqlite"):
        return {"timeout": LOCK_WAIT_S}
    if url.startswith("postgresql+asyncpg"):
        return {"server_settings": {"lock_timeout": f"{int(LOCK_WAIT_S * 1000)}ms"},
                "timeout": 10}  # seconds to connect, as for a lock: a clear error, not a hang
    return {}


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL (None: not SQLite, or in memory)."""
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
    return Path(path) if path and path != ":memory:" else None


def _sqlite_folder(url: str) -> Path | None:
    file = sqlite_file(url)
    return file.parent if file is not None else None


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, connect_args=_connect_args(url))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False,
                                           class_=AsyncSession)
        self._folder = _sqlite_folder(url)
        self._before_close: list[Callable[[], Awaitable[None]]] = []
        self._closed = False
        file = sqlite_file(url)
        self._lock = SqliteLock(file) if file is not None else None

    def claim(self) -> None:
        """One gateway per SQLite file (lfgate.storage.sqlite_lock): DatabaseInUse if another
        holds it. PostgreSQL needs no claim: gateways share it (lfgate.storage.presence)."""
        if self._lock is not None:
            self._lock.acquire()

    def fault(self, exc: BaseException) -> StorageFault | None:
        """`exc` as the database refusing for a while (locked, full, out of reach), with a
        message that names the cause; None when it is something else."""
        return storage_fault(exc, self._folder)

    def before_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` at close, before the connections go (a store's last writes)."""
        self._before_close.append(callback)

    async def migrate(self, revision: str = HEAD) -> None:
        """Bring the schema to `revision` (the latest by default)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), revision))

    async def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        async with self.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision())

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                for callback in self._before_close:
                    await callback()
                await self.engine.dispose()
            finally:
                if self._lock is not None:
                    self._lock.release()


async def open_database(url: str) -> Database:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    database = Database(url)
    database.claim()
    try:
        await database.migrate()
    except BaseException:
        await database.close()
        raise
    return database
