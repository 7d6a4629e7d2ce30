"""A turn's events, numbered and kept, so a reply outlives whoever watches it.

A reader follows from any point: a page that reloaded, slept or lost its connection comes
back with the last event id it saw (SSE's Last-Event-ID) and gets what it missed, then what
comes next, from the same log every other reader follows. Writing never waits for a reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

ApiEvent = tuple[str, dict[str, Any]]  # (SSE event name, its JSON data)
LoggedEvent = tuple[int, ApiEvent]  # (event id, from 1, the event)


class TurnLog:
    def __init__(self) -> None:
        self._events: list[ApiEvent] = []
        self._closed = False
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._events)

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, name: str, data: dict[str, Any]) -> None:
        if self._closed:
            raise RuntimeError("the turn has ended: its log takes no more events")
        self._events.append((name, data))
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        # Readers hold the event they wait on; a fresh one is for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self, after: int = 0, idle_s: float | None = None
                     ) -> AsyncIterator[LoggedEvent | None]:
        """Every event after id `after`, then each new one, until the log closes; None for
        every `idle_s` without one (a keep-alive's turn)."""
        seen = max(0, after)
        while True:
            while seen < len(self._events):
                seen += 1
                yield seen, self._events[seen - 1]
            if self._closed:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), idle_s)
            except TimeoutError:
                yield None
