"""Server-Sent Events framing for chat turns, with keep-alive comments while nothing happens
(a model loading for a minute must not look like a dead connection to proxies)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from lfgate.services.chat_turns import ApiEvent, ChatTurns, Turn
from lfgate.services.errors import UnknownTurn

KEEPALIVE_S = 5.0


def sse_event(name: str, data: dict[str, Any]) -> str:
    """ASCII-only JSON: model output can hold U+2028, NEL and the like, which some clients'
    line splitters (Python's str.splitlines, so httpx) take for line breaks."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=True)}\n\n"


async def turn_stream(turn: Turn, turns: ChatTurns) -> AsyncIterator[str]:
    """The turn's events as SSE; a client that goes away stops the reply on the box."""
    try:
        while True:
            try:
                item = await asyncio.wait_for(turn.events.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if item is None:
                return
            yield sse_event(*item)
    finally:
        if not turn.finished:
            with contextlib.suppress(UnknownTurn):
                await asyncio.shield(turns.stop(turn.id))


async def final_event(turn: Turn) -> ApiEvent:
    """For stream=false: the turn's `done` or `error`, once the turn has ended."""
    last: ApiEvent = ("error", {"code": "no_reply", "message": "the turn ended without a reply"})
    while (item := await turn.events.get()) is not None:
        if item[0] in ("done", "error"):
            last = item
    return last
