from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from lfgate.api.deps import TurnsDep
from lfgate.api.schemas import ChatIn, ChatOut, ErrorOut, StopOut
from lfgate.api.sse import turn_response

router = APIRouter(prefix="/api/chat", tags=["chat"])


@router.post("", response_model=ChatOut, responses={502: {"model": ErrorOut}})
async def chat(body: ChatIn, turns: TurnsDep) -> StreamingResponse | ChatOut | JSONResponse:
    turn = await turns.start(message=body.message, chat_id=body.chat_id, model=body.model,
                             params=body.params.given())
    return await turn_response(turn, turns, stream=body.stream)


@router.post("/{turn_id}/stop")
async def stop(turn_id: str, turns: TurnsDep) -> StopOut:
    await turns.stop(turn_id)
    return StopOut(turn_id=turn_id)
