from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse

from lfgate.api.deps import SettingsDep, TurnsDep
from lfgate.api.guards.limits import check_limits
from lfgate.api.schemas import ChatIn, ChatOut, ErrorOut, StopOut
from lfgate.api.sse import (
    EVENT_ID,
    EVENT_STREAM,
    SSE_HEADERS,
    STREAMED,
    last_event_id,
    log_stream,
    turn_response,
)

router = APIRouter(prefix="/api/chat", tags=["chat"])


@router.post("", response_model=ChatOut, responses={**STREAMED, 502: {"model": ErrorOut}})
async def chat(body: ChatIn, turns: TurnsDep, settings: SettingsDep
               ) -> StreamingResponse | ChatOut | JSONResponse:
    check_limits(body, settings)
    turn = await turns.start(message=body.message, chat_id=body.chat_id, model=body.model,
                             params=body.params.given(), tool_result=body.tool_result)
    return await turn_response(turn, stream=body.stream)


@router.post("/{turn_id}/stop")
async def stop(turn_id: str, turns: TurnsDep) -> StopOut:
    await turns.stop(turn_id)
    return StopOut(turn_id=turn_id)


@router.get("/{turn_id}/stream", response_class=StreamingResponse, responses=EVENT_STREAM)
async def reattach(
    turn_id: str, turns: TurnsDep,
    last_event: Annotated[str | None, Header(alias="Last-Event-ID", pattern=EVENT_ID)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**31)] = None,
) -> StreamingResponse:
    """Follow a reply again after a reload, a sleep or a dropped connection: the events
    after `Last-Event-ID` (or `after`), then live ones until it ends. A reply that ended
    long ago comes back as its stored end (meta, then done or error)."""
    seen = last_event_id(last_event, after)
    log, live = await turns.reattach(turn_id)
    return StreamingResponse(log_stream(log, seen if live else 0),
                             media_type="text/event-stream", headers=SSE_HEADERS)
