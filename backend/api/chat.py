from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from lfgate.api.deps import TurnsDep
from lfgate.api.schemas import ChatIn, ChatOut, ErrorOut, StopOut
from lfgate.api.sse import final_event, turn_stream

router = APIRouter(prefix="/api/chat", tags=["chat"])


@router.post("", response_model=ChatOut, responses={502: {"model": ErrorOut}})
async def chat(body: ChatIn, turns: TurnsDep) -> StreamingResponse | ChatOut | JSONResponse:
    turn = await turns.start(message=body.message, chat_id=body.chat_id, model=body.model,
                       params=body.params.given())
    if body.stream:
        return StreamingResponse(turn_stream(turn, turns), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})
    name, data = await final_event(turn)
    if name == "error":
        error = ErrorOut(code=data["code"], message=data["message"], hint=data.get("hint") or "")
        return JSONResponse(error.model_dump(), status_code=502)
    return ChatOut(content=data["content"], chat_id=turn.chat_id, turn_id=turn.id,
                   finish_reason=data["finish_reason"])


@router.post("/{turn_id}/stop")
async def stop(turn_id: str, turns: TurnsDep) -> StopOut:
    await turns.stop(turn_id)
    return StopOut(turn_id=turn_id)
