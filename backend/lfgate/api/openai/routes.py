"""The OpenAI-compatible API under /v1: every model the gateway lists, by id, for the
clients users already have (the openai SDK, LangChain, `llm`, Open WebUI). docs/openai.md."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from lfgate.api.deps import RegistryDep, SettingsDep, StartedDep, TurnsDep
from lfgate.api.guards.limits import check_limits
from lfgate.api.openai.errors import openai_error
from lfgate.api.openai.schemas import (
    ChatCompletionIn,
    CompletionIn,
    ModelCardOut,
    ModelListOut,
    StreamOptions,
)
from lfgate.api.openai.stream import Completion, box_error_status, error_object
from lfgate.api.openai.text_completion import TextCompletion
from lfgate.api.sse import SSE_HEADERS, STREAMED, final_event
from lfgate.services.chat.completion_requests import completion_request
from lfgate.services.chat.openai_requests import turn_request
from lfgate.services.chat.turn_recorder import Turn
from lfgate.services.chat.turns import ChatTurns
from lfgate.services.errors import BadParameter, TooManyTurns, UnknownTurn
from lfgate.services.models.registry import ModelEntry

OWNER = "lfgate"
OPEN_WAIT_S = 20.0  # a streamed request waits this long for the box before its headers
# ... and then this long for its first text: a refusal the box makes before any (a prompt
# over the window) comes within milliseconds; a request queued behind another's reply (the
# box answers one at a time) gets its headers then and waits in the stream.
ANSWER_WAIT_S = 2.0


# GATEWAY_TOKEN, when set, is checked before any of these by lfgate.api.guards.auth (as for /api);
# without it any key passes (clients insist on sending one).
router = APIRouter(prefix="/v1", tags=["openai"])


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
                              if entry.usable])


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, registry: RegistryDep, started: StartedDep
                    ) -> ModelCardOut:
    return _card(registry.usable(model_id), started)


@router.post("/chat/completions", response_model=None, responses=STREAMED)
async def chat_completions(body: ChatCompletionIn, turns: TurnsDep, settings: SettingsDep,
                           registry: RegistryDep) -> StreamingResponse | JSONResponse:
    request = turn_request(body.model_dump(exclude_unset=True),
                           set(ChatCompletionIn.model_fields),
                           cli_mode=registry.settings_for(body.model).chat_mode == "cli")
    check_limits(body, settings)
    last = request.messages[-1]
    if last["role"] == "user" and not last["content"].strip():
        where = f"messages[{len(body.messages) - 1}].content"
        raise BadParameter(f"{where} is empty or whitespace only: there is nothing to answer",
                           param=where)
    started = await turns.start_messages(
        messages=request.messages, model=request.model, params=request.params,
        # A continued reply is no new exchange: it is not stored as one.
        store=settings.store_api_chats and request.n == 1 and not request.continues,
        tools=request.tools, n=request.n)
    turn = started[0]
    completion = Completion(started, request.model,
                            parallel_tool_calls=request.parallel_tool_calls)
    headers = {"X-LFGate-Turn-Id": turn.id,
               **({"X-LFGate-Chat-Id": turn.chat_id} if turn.chat_id else {})}
    return await _answer(body.stream, body.stream_options, started, turns, headers,
                         completion.stream, completion.whole)


@router.post("/completions", response_model=None, responses=STREAMED)
async def completions(body: CompletionIn, turns: TurnsDep, settings: SettingsDep,
                      registry: RegistryDep) -> StreamingResponse | JSONResponse:
    """OpenAI's legacy completions: each prompt (text or token ids) continued as raw text,
    no chat template, with `echo` and `logprobs` (lm-eval's loglikelihood); script mode."""
    request = completion_request(
        body.model_dump(exclude_unset=True), set(CompletionIn.model_fields),
        cli_mode=registry.settings_for(body.model).chat_mode == "cli")
    check_limits(body, settings)
    started = [await turns.start_completion(
        model=request.model, params=request.params,
        completion={"prompt": prompt, "echo": request.echo, "logprobs": request.logprobs})
        for prompt in request.prompts]
    answer = TextCompletion(started, request.model)
    return await _answer(body.stream, body.stream_options, started, turns,
                         {"X-LFGate-Turn-Id": started[0].id}, answer.stream, answer.whole)


async def _answer(stream: bool, options: StreamOptions | None, started: list[Turn],
                  turns: ChatTurns, headers: dict[str, str],
                  streamed: Callable[[ChatTurns, bool], AsyncIterator[str]],
                  whole: Callable[[list[dict[str, Any]]], dict[str, Any]]
                  ) -> StreamingResponse | JSONResponse:
    """The turns' answer, streamed or whole, for chat and completions alike. Streamed: a box
    that cannot serve, or refuses the request before any text (a prompt over the window),
    answers with a status code, not a stream that fails; but a load that takes longer than
    OPEN_WAIT_S streams on (keep-alives, then the reply or an error object), so clients'
    read time-outs do not fire meanwhile. Whole: one choice's error fails the request, as
    OpenAI's does, and the other choices stop."""
    if stream:
        first = started[0]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.opened.wait(), OPEN_WAIT_S)
        if first.opened.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first.answering.wait(), ANSWER_WAIT_S)
        if first.error is not None and not first.text:
            await _stop_all(turns, started[1:])
            return _box_error(first.error, headers)
        include_usage = bool(options and options.include_usage)
        return StreamingResponse(streamed(turns, include_usage),
                                 media_type="text/event-stream",
                                 headers={**SSE_HEADERS, **headers})
    dones = []
    for index, turn in enumerate(started):
        name, data = await final_event(turn)
        if name == "error":
            await _stop_all(turns, started[index + 1:])
            return _box_error(data, headers)
        dones.append(data)
    return JSONResponse(whole(dones), headers=headers)


async def _stop_all(turns: ChatTurns, started: list[Turn]) -> None:
    """The other prompts of a request that failed: stopped (those that ended already, too)."""
    for turn in started:
        with contextlib.suppress(UnknownTurn):
            await turns.stop(turn.id)


def _box_error(error: dict[str, object], headers: dict[str, str]) -> JSONResponse:
    status = box_error_status(str(error.get("code") or ""))
    body = error_object(error)["error"]
    if status == 429:
        headers = {**headers, "Retry-After": str(TooManyTurns.retry_after_s)}
    return openai_error(status, body["message"], code=body["code"], headers=headers)
