"""This gateway among the gateways sharing its database.

Gateways can share one PostgreSQL database. Each says it is alive: a row in `gateways`,
refreshed every HEARTBEAT_S. What a gateway has in flight carries its id (a reply streaming,
a run it drives), and another gateway takes such a thing for a leftover of a crash (a reply
`interrupted`, a run to resume) only once its owner has been quiet for QUIET_AFTER_S. Before,
a gateway starting beside another marked the other's live replies and runs `interrupted`,
and both then asked the same cells. A gateway on this host whose process is gone (killed,
even by SIGKILL) is known dead at once, without waiting for it to go quiet: a restart after
a crash recovers what the crashed gateway left. On SQLite one gateway holds the file
(lfgate.storage.sqlite_lock), so every other owner is gone by the time it starts.

Moments are each gateway's clock (UTC): gateways sharing a database keep their clocks within
seconds of each other (NTP), far inside QUIET_AFTER_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, select, update

from lfgate.storage.database import Database
from lfgate.storage.tables import Gateway, utcnow

logger = logging.getLogger("lfgate.storage")
HEARTBEAT_S = 10.0
QUIET_AFTER_S = 60.0  # a gateway not heard of for this long has stopped or died


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process (another app in it, as tests make)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class Presence:
    def __init__(self, database: Database, *, heartbeat_s: float = HEARTBEAT_S,
                 quiet_after_s: float = QUIET_AFTER_S) -> None:
        self.id = uuid.uuid4().hex
        self.host = socket.gethostname()[:200]
        # SQLite: this gateway holds the file, so it is the only one alive.
        self._alone = database.engine.dialect.name == "sqlite"
        self._sessions = database.sessions
        self._fault = database.fault
        self.heartbeat_s = heartbeat_s
        self.quiet_after_s = quiet_after_s
        self._task: asyncio.Task[None] | None = None

    def live_since(self) -> datetime:
        return utcnow() - timedelta(seconds=self.quiet_after_s)

    def live_ids(self) -> Select[tuple[str]]:
        """The ids of the gateways alive now (this one too, once registered), as a subquery
        for `owner IN (...)`."""
        if self._alone:
            return select(Gateway.id).where(Gateway.id == self.id)
        return select(Gateway.id).where(Gateway.seen_at >= self.live_since())

    async def register(self) -> None:
        """Say this gateway is here; forget gateways long gone, and those of this host whose
        process has ended."""
        now = utcnow()
        async with self._sessions.begin() as session:
            await session.execute(delete(Gateway).where(
                Gateway.seen_at < now - timedelta(seconds=10 * self.quiet_after_s)))
            session.add(Gateway(id=self.id, host=self.host, pid=os.getpid(), started_at=now,
                                seen_at=now))
        await self._forget_ended_here()

    async def beat(self) -> None:
        async with self._sessions.begin() as session:
            result = await session.execute(update(Gateway).where(Gateway.id == self.id)
                                           .values(seen_at=utcnow()))
            if result.rowcount == 0:  # forgotten after a long pause (a suspended laptop)
                now = utcnow()
                session.add(Gateway(id=self.id, host=self.host, pid=os.getpid(),
                                    started_at=now, seen_at=now))
        await self._forget_ended_here()

    async def _forget_ended_here(self) -> None:
        """Gateways of this host whose process is gone (a crash, a SIGKILL) are dead now,
        not once they have been quiet for QUIET_AFTER_S."""
        async with self._sessions.begin() as session:
            rows = (await session.execute(select(Gateway.id, Gateway.pid).where(
                Gateway.host == self.host, Gateway.id != self.id))).all()
            ended = [gateway_id for gateway_id, pid in rows if not _running(pid)]
            if ended:
                await session.execute(delete(Gateway).where(Gateway.id.in_(ended)))

    async def describe(self, gateway_id: str | None) -> str:
        """A gateway for a person: 'the gateway on HOST (pid N)'."""
        if gateway_id == self.id:
            return "this gateway"
        async with self._sessions() as session:
            row = await session.get(Gateway, gateway_id) if gateway_id else None
        return "another gateway" if row is None else \
            f"the gateway on {row.host} (pid {row.pid})"

    def start(self, after_beat: Callable[[], Awaitable[None]]) -> None:
        """Beat every heartbeat_s, then `after_beat` (recovering what gateways that died
        meanwhile left in flight)."""
        self._task = asyncio.create_task(self._beating(after_beat), name="gateway presence")

    async def _beating(self, after_beat: Callable[[], Awaitable[None]]) -> None:
        said = False
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.beat()
                await after_beat()
                said = False
            except Exception as exc:  # the database refusing for a while: beat again later
                if not said:
                    fault = self._fault(exc)
                    logger.warning("could not tell the database this gateway is alive (%s); "
                                   "trying again every %.0f s",
                                   fault.cause if fault else type(exc).__name__,
                                   self.heartbeat_s, exc_info=fault is None)
                    said = True

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):  # gone either way once quiet
            async with self._sessions.begin() as session:
                await session.execute(delete(Gateway).where(Gateway.id == self.id))
