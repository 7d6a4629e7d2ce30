"""The OpenAI-compatible API under /v1: every model the gateway lists, by id, for the
clients users already have (the openai SDK, LangChain, `llm`, Open WebUI). docs/openai.md."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, StreamingResponse

from lfgate.api.deps import RegistryDep, SettingsDep, StartedDep, TurnsDep
from lfgate.api.openai_errors import openai_error
from lfgate.api.openai_schemas import ChatCompletionIn, ModelCardOut, ModelListOut
from lfgate.api.openai_stream import Completion, box_error_status, error_object
from lfgate.api.sse import SSE_HEADERS, final_event
from lfgate.services.errors import TooManyTurns, Unauthorized
from lfgate.services.model_registry import ModelEntry
from lfgate.services.openai_requests import turn_request

OWNER = "lfgate"
OPEN_WAIT_S = 20.0  # a streamed request waits this long for the box before its headers


def require_token(settings: SettingsDep,
                  authorization: Annotated[str | None, Header()] = None) -> None:
    """GATEWAY_TOKEN, when set, as `Authorization: Bearer`; without it any key passes
    (clients insist on sending one)."""
    token = settings.gateway_token.get_secret_value()
    if not token:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                              token.encode()):
        raise Unauthorized("incorrect API key provided: send GATEWAY_TOKEN as "
                           "`Authorization: Bearer <token>` (the SDKs' api_key)")


router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_token)])


def _card(entry: ModelEntry, started: int) -> ModelCardOut:
    facts = entry.spec.facts
    created = int(facts.modified) if facts is not None and facts.modified else started
    return ModelCardOut(id=entry.spec.id, created=created, owned_by=OWNER,
                        parent=entry.spec.base_id)


@router.get("/models")
async def list_models(registry: RegistryDep, started: StartedDep) -> ModelListOut:
    """Every model that can be chosen: bases, runs and checkpoints (broken ones are left
    out; GET /api/models lists them with their reasons)."""
    return ModelListOut(data=[_card(entry, started) for entry in registry.entries()
                              if entry.spec.usable])


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, registry: RegistryDep, started: StartedDep
                    ) -> ModelCardOut:
    return _card(registry.usable(model_id), started)


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionIn, turns: TurnsDep, settings: SettingsDep,
                           registry: RegistryDep) -> StreamingResponse | JSONResponse:
    request = turn_request(body.model_dump(exclude_unset=True),
                           set(ChatCompletionIn.model_fields),
                           cli_mode=registry.settings_for(body.model).chat_mode == "cli")
    turn = await turns.start_messages(messages=request.messages, model=request.model,
                                      params=request.params, store=settings.store_api_chats)
    completion = Completion(turn, request.model)
    headers = {"X-LFGate-Turn-Id": turn.id,
               **({"X-LFGate-Chat-Id": turn.chat_id} if turn.chat_id else {})}
    if body.stream:
        # A box that cannot serve answers with a status code, not a stream that fails; but
        # a load that takes longer than OPEN_WAIT_S streams on (keep-alives, then the reply
        # or an error object), so clients' read time-outs do not fire during a long load.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(turn.opened.wait(), OPEN_WAIT_S)
        if turn.error is not None and not turn.text:
            return _box_error(turn.error, headers)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(completion.stream(turns, include_usage),
                                 media_type="text/event-stream",
                                 headers={**SSE_HEADERS, **headers})
    name, data = await final_event(turn)
    if name == "error":
        return _box_error(data, headers)
    return JSONResponse(completion.whole(data), headers=headers)


def _box_error(error: dict[str, object], headers: dict[str, str]) -> JSONResponse:
    status = box_error_status(str(error.get("code") or ""))
    body = error_object(error)["error"]
    if status == 429:
        headers = {**headers, "Retry-After": str(TooManyTurns.retry_after_s)}
    return openai_error(status, body["message"], code=body["code"], headers=headers)
