from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from lfgate.api.deps import SettingsDep, TurnsDep
from lfgate.api.limits import check_limits
from lfgate.api.schemas import ChatIn, ChatOut, ErrorOut, StopOut
from lfgate.api.sse import STREAMED, turn_response

router = APIRouter(prefix="/api/chat", tags=["chat"])


@router.post("", response_model=ChatOut, responses={**STREAMED, 502: {"model": ErrorOut}})
async def chat(body: ChatIn, turns: TurnsDep, settings: SettingsDep
               ) -> StreamingResponse | ChatOut | JSONResponse:
    check_limits(body, settings)
    turn = await turns.start(message=body.message, chat_id=body.chat_id, model=body.model,
                             params=body.params.given())
    return await turn_response(turn, turns, stream=body.stream)


@router.post("/{turn_id}/stop")
async def stop(turn_id: str, turns: TurnsDep) -> StopOut:
    await turns.stop(turn_id)
    return StopOut(turn_id=turn_id)
