"""Chat turns: one user message in, the model's reply out as a stream of API events.

Each turn runs as its own task feeding a queue, so the reply does not depend on the HTTP
request that asked for it: a stop request or a dropped client cancels it on the box.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from lfgate.box.errors import BoxError
from lfgate.box.session import WrapperSession
from lfgate.remote import wrapper_protocol as wp
from lfgate.services.conversations import ConversationMemory
from lfgate.services.errors import UnknownTurn
from lfgate.services.model_registry import ModelRegistry

ApiEvent = tuple[str, dict[str, Any]]  # (SSE event name, its JSON data)


@dataclass
class Turn:
    id: str
    chat_id: str
    model: str
    events: asyncio.Queue[ApiEvent | None] = field(default_factory=asyncio.Queue)
    started: float = field(default_factory=time.monotonic)
    finished: bool = False
    stop_requested: bool = False
    session: WrapperSession | None = None
    task: asyncio.Task[None] | None = None

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.events.put_nowait((name, data))

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)


class ChatTurns:
    def __init__(self, registry: ModelRegistry, memory: ConversationMemory) -> None:
        self._registry = registry
        self._memory = memory
        self._active: dict[str, Turn] = {}

    def start(self, *, message: str, chat_id: str | None, model: str,
              params: dict[str, Any]) -> Turn:
        self._registry.get(model)  # unknown model: refused before anything starts
        chat_id = self._memory.open(chat_id)
        self._memory.claim(chat_id)
        turn = Turn(id=uuid.uuid4().hex, chat_id=chat_id, model=model)
        messages = [*self._memory.history(chat_id), {"role": "user", "content": message}]
        self._active[turn.id] = turn
        turn.task = asyncio.create_task(self._run(turn, messages, params), name=f"turn {turn.id}")
        return turn

    async def stop(self, turn_id: str) -> None:
        turn = self._active.get(turn_id)
        if turn is None:
            raise UnknownTurn(f"no reply {turn_id!r} is running")
        turn.stop_requested = True
        if turn.session is not None:
            await turn.session.cancel(turn.id)

    async def close(self) -> None:
        for turn in list(self._active.values()):
            if turn.task is not None:
                turn.task.cancel()

    async def _run(self, turn: Turn, messages: list[dict[str, str]],
                   params: dict[str, Any]) -> None:
        turn.emit("meta", {"chat_id": turn.chat_id, "turn_id": turn.id, "model": turn.model})
        entry = self._registry.get(turn.model)
        try:
            turn.session = await self._registry.ready_session(turn.model, params)
            if turn.stop_requested:
                turn.emit("done", self._done(turn, "", wp.FINISH_STOPPED, None, 0))
                return
            entry.active_turns += 1
            try:
                await self._relay(turn, messages, params)
            finally:
                entry.active_turns -= 1
        except BoxError as exc:
            turn.emit("error", exc.as_dict())
        finally:
            turn.finished = True
            self._active.pop(turn.id, None)
            self._memory.release(turn.chat_id)
            turn.events.put_nowait(None)

    async def _relay(self, turn: Turn, messages: list[dict[str, str]],
                     params: dict[str, Any]) -> None:
        assert turn.session is not None
        ttft_ms: float | None = None
        chunks = 0
        async for event in turn.session.chat(turn.id, messages, params):
            kind = event["event"]
            if kind == wp.EV_DELTA:
                chunks += 1
                ttft_ms = ttft_ms if ttft_ms is not None else turn.elapsed_ms()
                turn.emit("delta", {"text": event["text"]})
            elif kind == wp.EV_INFO:
                turn.emit("info", {"code": event["code"], "message": event["message"]})
            elif kind == wp.EV_DONE:
                self._memory.add_turn(turn.chat_id, messages[-1]["content"], event["content"])
                turn.emit("done", self._done(turn, event["content"], event["finish_reason"],
                                             ttft_ms, chunks, event))
            elif kind == wp.EV_ERROR:
                turn.emit("error", {"code": event.get("code"), "message": event.get("message"),
                                    "hint": event.get("hint", "")})

    @staticmethod
    def _done(turn: Turn, content: str, finish_reason: str, ttft_ms: float | None,
              chunks: int, box_event: dict[str, Any] | None = None) -> dict[str, Any]:
        done: dict[str, Any] = {
            "content": content,
            "finish_reason": finish_reason,
            "timing": {"ttft_ms": ttft_ms, "total_ms": turn.elapsed_ms(), "chunks": chunks},
        }
        if box_event is not None:
            done["box_timing"] = box_event.get("timing")
            if "usage" in box_event:
                done["usage"] = box_event["usage"]
        return done
