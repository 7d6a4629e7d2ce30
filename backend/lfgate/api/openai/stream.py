"""A turn in OpenAI's chat-completions shapes: `chat.completion.chunk` objects as SSE
`data:` lines ending with `data: [DONE]`, or one `chat.completion`."""

from __future__ import annotations

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
BOX_ERROR_STATUS = {wp.E_BAD_REQUEST: 400, wp.E_MESSAGE_TOO_LONG: 400,
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
    """One request's answer, however it is sent."""

    turn: Turn
    model: str
    parallel_tool_calls: bool = True  # False: a reply's first call only
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        return f"chatcmpl-{self.turn.id}"

    def tool_calls(self, done: dict[str, Any]) -> list[dict[str, Any]]:
        """The reply's calls in OpenAI's shape, each with an id of its own."""
        calls = done.get("tool_calls") or []
        if not self.parallel_tool_calls:
            calls = calls[:1]
        return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                 "function": {"name": call["name"], "arguments": call["arguments"]}}
                for call in calls]

    def chunk(self, delta: dict[str, Any], finish: str | None = None,
              include_usage: bool = False, logprobs: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                         "finish_reason": finish}],
        }
        if include_usage:
            chunk["usage"] = None
        return chunk

    def whole(self, done: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": done["content"],
                                   "refusal": None}
        if calls := self.tool_calls(done):
            message["tool_calls"] = calls
            message["content"] = done["content"] or None  # as OpenAI sends a call alone
        return {
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": done.get("logprobs"),
                         "finish_reason": finish_reason(done)}],
            "usage": usage(done),
        }

    async def stream(self, turns: ChatTurns, include_usage: bool) -> AsyncIterator[str]:
        """The SSE body: a first chunk with the role, one per piece of text, a last with the
        finish reason (then, asked for, one with the usage), then [DONE]. A box error after
        the stream began is an `error` object, as OpenAI's clients expect."""
        yield _data(self.chunk({"role": "assistant", "content": ""}, None, include_usage))
        # An OpenAI client cannot reattach: its leaving stops the reply on the box.
        async with contextlib.aclosing(turn_events(self.turn, turns,
                                                   stop_on_leave=True)) as events:
            async for item in events:
                if item is None:
                    yield ": keep-alive\n\n"
                    continue
                _, (name, data) = item
                if name == "delta":
                    yield _data(self.chunk({"content": data["text"]}, None, include_usage))
                elif name == "done":
                    # Calls come whole, after the words: the box holds a call's text until
                    # the template's parser has read it (as vLLM's parsers send a call's
                    # name and arguments once they are sure of them).
                    for index, call in enumerate(self.tool_calls(data)):
                        yield _data(self.chunk({"tool_calls": [{"index": index, **call}]},
                                               None, include_usage))
                    # Log probabilities, asked for, come whole with the last chunk (the
                    # box reads them once generation has ended).
                    yield _data(self.chunk({}, finish_reason(data), include_usage,
                                           data.get("logprobs")))
                    if include_usage:
                        last = self.chunk({}, None, include_usage)
                        last["choices"], last["usage"] = [], usage(data)
                        yield _data(last)
                elif name == "error":
                    yield _data(error_object(data))
        yield DONE_LINE


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=True, separators=(',', ':'))}\n\n"
