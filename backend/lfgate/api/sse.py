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
from lfgate.services.chat.turn_log import ApiEvent, LoggedEvent, TurnLog
from lfgate.services.chat.turn_recorder import Turn
from lfgate.services.chat.turns import ChatTurns
from lfgate.services.errors import UnknownTurn

KEEPALIVE_S = 5.0
RETRY_MS = 1000  # a client's wait before it reattaches to a dropped stream


def sse_event(name: str, data: dict[str, Any], event_id: int | str | None = None) -> str:
    """ASCII-only JSON: model output can hold U+2028, NEL and the like, which some clients'
    line splitters (Python's str.splitlines, so httpx) take for line breaks. `event_id` is
    what a client sends back as Last-Event-ID to reattach."""
    head = "" if event_id is None else f"id: {event_id}\n"
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=True)}\n\n"


async def turn_events(turn: Turn, turns: ChatTurns, *, after: int = 0,
                      stop_on_leave: bool = False) -> AsyncIterator[LoggedEvent | None]:
    """The turn's events after id `after` until it ends, None for every KEEPALIVE_S without
    one. A client that goes away leaves the reply running (it can reattach), unless
    `stop_on_leave` (an OpenAI client, which cannot: its reply stops on the box)."""
    try:
        async for item in turn.log.follow(after, KEEPALIVE_S):
            yield item
    finally:
        if stop_on_leave and not turn.finished:
            with contextlib.suppress(UnknownTurn):
                await asyncio.shield(turns.stop(turn.id))


async def log_stream(log: TurnLog, after: int = 0) -> AsyncIterator[str]:
    """A turn's events after id `after` as SSE, each with its id, with keep-alive comments;
    a first `retry` says how soon to reattach after a dropped connection. Leaving leaves
    the reply running."""
    yield f"retry: {RETRY_MS}\n\n"
    async for item in log.follow(after, KEEPALIVE_S):
        yield ": keep-alive\n\n" if item is None else sse_event(*item[1], item[0])


async def final_event(turn: Turn) -> ApiEvent:
    """For stream=false: the turn's `done` or `error`, once the turn has ended."""
    last: ApiEvent = ("error", {"code": "no_reply", "message": "the turn ended without a reply"})
    async for _, item in turn.log.follow():
        if item[0] in ("done", "error"):
            last = item
    return last


EVENT_ID = r"^[0-9]{1,10}$"  # a turn's event id, as its stream's `id:` lines


def last_event_id(header: str | None, query: int | None) -> int:
    """Where a reattaching client left off: the Last-Event-ID header (a browser's
    EventSource sends it; checked against EVENT_ID by the route), or `after` for a client
    that cannot set headers."""
    if query is not None:
        return query
    return int(header) if header else 0


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


async def turn_response(turn: Turn, *, stream: bool
                        ) -> StreamingResponse | ChatOut | JSONResponse:
    """SSE while the reply streams, or the whole reply as JSON once it is done."""
    if stream:
        return StreamingResponse(log_stream(turn.log), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    name, data = await final_event(turn)
    if name == "error":
        error = ErrorOut(code=data["code"], message=data["message"], hint=data.get("hint") or "")
        return JSONResponse(error.model_dump(), status_code=502)
    return ChatOut(content=data["content"], chat_id=turn.chat_id, turn_id=turn.id,
                   finish_reason=data["finish_reason"], tool_calls=data.get("tool_calls"))
