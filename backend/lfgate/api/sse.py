"""How a chat turn goes back over HTTP: Server-Sent Events, with keep-alive comments while
nothing happens (a model loading for a minute must not look like a dead connection to
proxies), or one JSON answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse

from lfgate.api.schemas import ChatOut, ErrorOut
from lfgate.services.chat_turns import ChatTurns
from lfgate.services.errors import UnknownTurn
from lfgate.services.turn_recorder import ApiEvent, Turn

KEEPALIVE_S = 5.0


def sse_event(name: str, data: dict[str, Any]) -> str:
    """ASCII-only JSON: model output can hold U+2028, NEL and the like, which some clients'
    line splitters (Python's str.splitlines, so httpx) take for line breaks."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=True)}\n\n"


async def turn_events(turn: Turn, turns: ChatTurns) -> AsyncIterator[ApiEvent | None]:
    """The turn's events until it ends, None for every KEEPALIVE_S without one; a client
    that goes away (the generator closed early) stops the reply on the box."""
    try:
        while True:
            try:
                item = await asyncio.wait_for(turn.events.get(), KEEPALIVE_S)
            except TimeoutError:
                yield None
                continue
            if item is None:
                return
            yield item
    finally:
        if not turn.finished:
            with contextlib.suppress(UnknownTurn):
                await asyncio.shield(turns.stop(turn.id))


async def turn_stream(turn: Turn, turns: ChatTurns) -> AsyncIterator[str]:
    """The turn's events as SSE, with keep-alive comments."""
    async with contextlib.aclosing(turn_events(turn, turns)) as events:
        async for item in events:
            yield ": keep-alive\n\n" if item is None else sse_event(*item)


async def final_event(turn: Turn) -> ApiEvent:
    """For stream=false: the turn's `done` or `error`, once the turn has ended."""
    last: ApiEvent = ("error", {"code": "no_reply", "message": "the turn ended without a reply"})
    while (item := await turn.events.get()) is not None:
        if item[0] in ("done", "error"):
            last = item
    return last


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# What the OpenAPI schema says of these answers: a stream of events (as FastAPI declares its
# own, OpenAPI 3.2's `itemSchema`; `data` is JSON, or /v1's closing `[DONE]`). A route that
# only streams declares EVENT_STREAM, one that streams when asked (stream=true) STREAMED,
# beside its JSON answer.
_EVENT = {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"},
    "retry": {"type": "integer", "minimum": 0}}}
_EVENTS = {"text/event-stream": {"itemSchema": _EVENT}}
EVENT_STREAM: dict[int | str, dict[str, Any]] = {200: {
    "description": "Server-Sent Events", "content": _EVENTS}}
STREAMED: dict[int | str, dict[str, Any]] = {200: {
    "description": "The JSON answer, or with stream=true Server-Sent Events", "content": _EVENTS}}


async def turn_response(turn: Turn, turns: ChatTurns, *, stream: bool
                        ) -> StreamingResponse | ChatOut | JSONResponse:
    """SSE while the reply streams, or the whole reply as JSON once it is done."""
    if stream:
        return StreamingResponse(turn_stream(turn, turns), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    name, data = await final_event(turn)
    if name == "error":
        error = ErrorOut(code=data["code"], message=data["message"], hint=data.get("hint") or "")
        return JSONResponse(error.model_dump(), status_code=502)
    return ChatOut(content=data["content"], chat_id=turn.chat_id, turn_id=turn.id,
                   finish_reason=data["finish_reason"])
