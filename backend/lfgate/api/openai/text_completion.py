"""A /v1/completions answer in OpenAI's legacy shapes: `text_completion` objects, one choice
per prompt, whole or as SSE `data:` lines ending with `data: [DONE]` (as vLLM streams them:
each prompt's choice in turn, its log probabilities with its last chunk)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from lfgate.api.openai.stream import DONE_LINE, _data, error_object, finish_reason, usage
from lfgate.api.sse import turn_events
from lfgate.services.chat.turn_recorder import Turn
from lfgate.services.chat.turns import ChatTurns


@dataclass
class TextCompletion:
    turns: list[Turn]  # one per prompt, in the prompts' order
    model: str
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        return f"cmpl-{self.turns[0].id}"

    def _object(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model, "choices": choices}

    def whole(self, dones: list[dict[str, Any]]) -> dict[str, Any]:
        answer = self._object([{"index": index, "text": done["content"],
                                "logprobs": done.get("logprobs"),
                                "finish_reason": finish_reason(done)}
                               for index, done in enumerate(dones)])
        counted = [usage(done) for done in dones]
        answer["usage"] = None if None in counted else {
            key: sum(c[key] for c in counted if c) for key in
            ("prompt_tokens", "completion_tokens", "total_tokens")}
        return answer

    async def stream(self, turns: ChatTurns, include_usage: bool) -> AsyncIterator[str]:
        """Each prompt's text as it comes, then its last chunk (finish reason and log
        probabilities); an error after the stream began is an `error` object; [DONE]."""
        counted: list[dict[str, int] | None] = []
        for index, turn in enumerate(self.turns):
            async with contextlib.aclosing(turn_events(turn, turns,
                                                       stop_on_leave=True)) as events:
                async for item in events:
                    if item is None:
                        yield ": keep-alive\n\n"
                        continue
                    _, (name, data) = item
                    if name == "delta":
                        yield _data(self._object([{"index": index, "text": data["text"],
                                                   "logprobs": None,
                                                   "finish_reason": None}]))
                    elif name == "done":
                        counted.append(usage(data))
                        yield _data(self._object([{"index": index, "text": "",
                                                   "logprobs": data.get("logprobs"),
                                                   "finish_reason": finish_reason(data)}]))
                    elif name == "error":
                        yield _data(error_object(data))
        if include_usage:
            last = self._object([])
            last["usage"] = None if None in counted or not counted else {
                key: sum(c[key] for c in counted if c) for key in
                ("prompt_tokens", "completion_tokens", "total_tokens")}
            yield _data(last)
        yield DONE_LINE
