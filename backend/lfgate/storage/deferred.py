"""A reply's saves that the database refused for a while, kept until it takes them.

A reply streams from the box for seconds or minutes and is saved as it grows. If the database
is locked by another process, its disk is full or its server is out of reach meanwhile, the
reply still reaches the user: its saves wait here (the newest value of each field), are
written in the background as soon as the database takes them again, and reads show them
(`view`), so what the API answers is what will be stored. Nothing is written twice and
nothing older overwrites something newer. A gateway stopped while they still wait logs what it
could not save; at the next start such a reply is `interrupted`, with what was saved before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lfgate.storage.errors import UnknownMessage
from lfgate.storage.faults import StorageFault

if TYPE_CHECKING:
    from lfgate.storage.chat_store import MessageRecord

logger = logging.getLogger("lfgate.storage")
RETRY_S = 0.5  # between attempts while the database still refuses (each may wait its lock)
SHOWN = ("content", "status", "provenance")  # what a read of a waiting reply shows


class DeferredSaves:
    def __init__(self, write: Callable[[str, dict[str, Any]], Awaitable[None]],
                 fault: Callable[[BaseException], StorageFault | None],
                 retry_s: float = RETRY_S) -> None:
        """`write(message_id, values)` saves a reply; `fault(exc)` says whether an error is
        the database refusing for a while (then the save waits) or anything else (raised)."""
        self._write = write
        self._fault = fault
        self._retry_s = retry_s
        self._pending: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, int] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # per reply: its lock, its users
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    async def save(self, message_id: str, values: dict[str, Any]) -> None:
        """Write now, or, while the database refuses, keep `values` for later. Saves of one
        reply go in the order they were asked for."""
        lock, users = self._locks.get(message_id) or (asyncio.Lock(), 0)
        self._locks[message_id] = (lock, users + 1)
        try:
            async with lock:
                if message_id in self._pending:  # already waiting: join it, after it
                    self._keep(message_id, values)
                    return
                try:
                    await self._write(message_id, values)
                except (UnknownMessage, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    fault = self._fault(exc)
                    if fault is None:
                        raise
                    logger.warning("a reply could not be saved (%s): it streams on, and is "
                                   "saved once the database takes it", fault.cause)
                    self._keep(message_id, values)
        finally:
            lock, users = self._locks[message_id]
            if users > 1:
                self._locks[message_id] = (lock, users - 1)
            else:
                del self._locks[message_id]

    def view(self, record: MessageRecord) -> MessageRecord:
        """A stored message as it will be once its waiting saves are written."""
        waiting = self._pending.get(record.id)
        if not waiting:
            return record
        return dataclasses.replace(record, **{k: waiting[k] for k in SHOWN if k in waiting})

    def _keep(self, message_id: str, values: dict[str, Any]) -> None:
        self._pending[message_id] = {**self._pending.get(message_id, {}), **values}
        self._versions[message_id] = self._versions.get(message_id, 0) + 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="deferred reply saves")

    async def _drain(self) -> None:
        while self._pending:
            if await self._write_all():
                continue
            await asyncio.sleep(self._retry_s)
        logger.warning("the database took the replies it had refused: saved")

    async def _write_all(self) -> bool:
        """One attempt at every waiting reply; False as soon as the database still refuses."""
        for message_id in list(self._pending):
            values, version = dict(self._pending[message_id]), self._versions[message_id]
            try:
                await self._write(message_id, values)
            except UnknownMessage:  # its chat was deleted meanwhile: nothing to save
                pass
            except Exception as exc:  # the database refusing still, or a bug: say which
                if self._fault(exc) is not None:
                    return False
                logger.exception("a reply's waiting save failed and is dropped")
            if self._versions.get(message_id) == version:  # nothing newer came meanwhile
                self._pending.pop(message_id, None)
                self._versions.pop(message_id, None)
        return True

    async def close(self, timeout_s: float = 10.0) -> None:
        """At shutdown: one last chance for waiting saves, then say what is lost."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pending:
            with contextlib.suppress(TimeoutError, Exception):
                async with asyncio.timeout(timeout_s):
                    await self._write_all()
        if self._pending:
            logger.error("%d reply(ies) could not be saved before shutdown: the database "
                         "still refused them; they will show as interrupted",
                         len(self._pending))
