"""A turn in OpenAI's chat-completions shapes: `chat.completion.chunk` objects as SSE
`data:` lines ending with `data: [DONE]`, or one `chat.completion`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from lfgate import __version__
from lfgate.api.sse import turn_events
from lfgate.remote import wrapper_protocol as wp
from lfgate.services.chat.turn_recorder import Turn
from lfgate.services.chat.turns import ChatTurns

FINGERPRINT = f"lfgate-{__version__}"
DONE_LINE = "data: [DONE]\n\n"
# Box error codes that are the request's fault, or the box being busy; any other box
# error is the box being unable to serve (503), or, once a reply began, a failure in it.
# `reply_failed`: the gateway's own failure under the reply (lfgate.services.chat.turns).
# A model that cannot answer as it is (wp.MODEL_UNUSABLE_CODES): 400, which no SDK retries.
# not_supported: the request asks what this wrapper cannot do (CLI mode, a merged adapter):
# retrying cannot help either.
BOX_ERROR_STATUS = {wp.E_BAD_REQUEST: 400, wp.E_MESSAGE_TOO_LONG: 400, wp.E_NOT_SUPPORTED: 400,
                    wp.E_CONTEXT_TOO_LONG: 400, wp.E_BUSY: 429,
                    wp.E_GENERATION_FAILED: 500, "reply_failed": 500,
                    **dict.fromkeys(wp.MODEL_UNUSABLE_CODES, 400)}


def box_error_status(code: str | None) -> int:
    return BOX_ERROR_STATUS.get(code or "", 503)


def finish_reason(done: dict[str, Any]) -> str:
    """The box's stop/length, or tool_calls; a reply stopped from the gateway (not by the
    client) ended where it was stopped, which OpenAI's clients know only as "stop"."""
    if done.get("tool_calls"):
        return "tool_calls"
    return "length" if done["finish_reason"] == wp.FINISH_LENGTH else "stop"


def usage(done: dict[str, Any]) -> dict[str, int] | None:
    """Tokens as the box counted them; None where it counts none (CLI mode)."""
    counted = done.get("usage") or {}
    completion, prompt = counted.get("completion_tokens"), counted.get("prompt_tokens")
    if completion is None or prompt is None:
        return None
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def error_object(error: dict[str, Any]) -> dict[str, Any]:
    status = box_error_status(error.get("code"))
    message = str(error.get("message") or "the box failed")
    hint = error.get("hint")
    return {"error": {"message": f"{message} ({hint})" if hint else message,
                      "type": "server_error" if status >= 500 else "invalid_request_error",
                      "param": None, "code": error.get("code")}}


@dataclass
class Completion:
    """One request's answer, however it is sent: one choice per turn (`n` of them)."""

    turns: list[Turn]
    model: str
    parallel_tool_calls: bool = True  # False: a reply's first call only
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        return f"chatcmpl-{self.turns[0].id}"

    def tool_calls(self, done: dict[str, Any]) -> list[dict[str, Any]]:
        """The reply's calls in OpenAI's shape, each with an id of its own."""
        calls = done.get("tool_calls") or []
        if not self.parallel_tool_calls:
            calls = calls[:1]
        return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                 "function": {"name": call["name"], "arguments": call["arguments"]}}
                for call in calls]

    def chunk(self, delta: dict[str, Any], finish: str | None = None,
              include_usage: bool = False, logprobs: dict[str, Any] | None = None,
              index: int = 0) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": FINGERPRINT,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                         "finish_reason": finish}],
        }
        if include_usage:
            chunk["usage"] = None
        return chunk

    def choice(self, index: int, done: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": done["content"],
                                   "refusal": None}
        if calls := self.tool_calls(done):
            message["tool_calls"] = calls
            message["content"] = done["content"] or None  # as OpenAI sends a call alone
        return {"index": index, "message": message, "logprobs": done.get("logprobs"),
                "finish_reason": finish_reason(done)}

    def whole(self, dones: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": FINGERPRINT,
            "choices": [self.choice(index, done) for index, done in enumerate(dones)],
            "usage": summed_usage(dones),
        }

    async def stream(self, turns: ChatTurns, include_usage: bool) -> AsyncIterator[str]:
        """The SSE body: per choice a first chunk with the role, one per piece of text, a
        last with the finish reason; the choices' chunks as they come (n > 1: interleaved,
        each with its index); then, asked for, one with the usage, then [DONE]. A box error
        after the stream began is an `error` object, as OpenAI's clients expect."""
        for index in range(len(self.turns)):
            yield _data(self.chunk({"role": "assistant", "content": ""}, None, include_usage,
                                   index=index))
        dones: list[dict[str, Any]] = []
        streamed = [0] * len(self.turns)  # log probabilities each choice's deltas carried
        async with contextlib.aclosing(_merged(self.turns, turns)) as events:
            async for index, item in events:
                if item is None:
                    yield ": keep-alive\n\n"
                    continue
                _, (name, data) = item
                if name == "delta":
                    logprobs = data.get("logprobs")
                    if logprobs is not None:
                        streamed[index] += len(logprobs["content"])
                    yield _data(self.chunk({"content": data["text"]}, None, include_usage,
                                           logprobs, index=index))
                elif name == "done":
                    dones.append(data)
                    # Calls come whole, after the words: the box holds a call's text until
                    # the template's parser has read it (as vLLM's parsers send a call's
                    # name and arguments once they are sure of them).
                    for number, call in enumerate(self.tool_calls(data)):
                        yield _data(self.chunk({"tool_calls": [{"index": number, **call}]},
                                               None, include_usage, index=index))
                    # Log probabilities, asked for, come with each piece of text (the
                    # tokens it completed); the last chunk carries those no piece did (a
                    # token scored after its text went out, or a box that streams none).
                    yield _data(self.chunk({}, finish_reason(data), include_usage,
                                           _rest(data.get("logprobs"), streamed[index]),
                                           index=index))
                elif name == "error":
                    yield _data(error_object(data))
        if include_usage and dones:
            last = self.chunk({}, None, include_usage)
            last["choices"], last["usage"] = [], summed_usage(dones)
            yield _data(last)
        yield DONE_LINE


def _rest(whole: dict[str, Any] | None, streamed: int) -> dict[str, Any] | None:
    """A reply's log probabilities past the first `streamed` (those its deltas carried)."""
    if whole is None or not isinstance(whole.get("content"), list):
        return whole
    return {**whole, "content": whole["content"][streamed:]}


def summed_usage(dones: list[dict[str, Any]]) -> dict[str, int] | None:
    """Tokens of every choice together; the prompt counted once (one prompt, n replies)."""
    counted = [usage(done) for done in dones]
    if not counted or None in counted:
        return None
    completion = sum(c["completion_tokens"] for c in counted if c)
    prompt = counted[0]["prompt_tokens"] if counted[0] else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


async def _merged(started: list[Turn], turns: ChatTurns
                  ) -> AsyncIterator[tuple[int, Any]]:
    """The events of several turns as they come, each with its turn's index; keep-alives
    (None) only while none has anything. An OpenAI client cannot reattach: its leaving
    stops every reply on the box."""
    if len(started) == 1:
        async with contextlib.aclosing(turn_events(started[0], turns,
                                                   stop_on_leave=True)) as events:
            async for item in events:
                yield 0, item
        return
    queue: asyncio.Queue[tuple[int, Any] | None] = asyncio.Queue()

    async def pump(index: int, turn: Turn) -> None:
        async with contextlib.aclosing(turn_events(turn, turns, stop_on_leave=True)) as events:
            async for item in events:
                await queue.put((index, item))

    tasks = [asyncio.create_task(pump(i, t), name=f"choice {i} of {t.id}")
             for i, t in enumerate(started)]
    ending = asyncio.gather(*tasks)
    ending.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (item := await queue.get()) is not None:
            yield item
        await ending  # a pump's failure is this stream's
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not ending.done():
            ending.cancel()
        with contextlib.suppress(BaseException):
            await ending


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=True, separators=(',', ':'))}\n\n"
