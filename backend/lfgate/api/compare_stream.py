"""A compare's slots as one SSE stream: each slot's events (those of /api/chat) with its
`slot` (and, unless blind, its `model`), interleaved as they come; one slot's error ends
only that slot. A client that goes away stops every slot still running."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from lfgate.api.sse import KEEPALIVE_S, final_event, sse_event, turn_events
from lfgate.services.chat_turns import ChatTurns
from lfgate.services.compare import CompareRun
from lfgate.services.turn_recorder import Turn

_SlotEvent = tuple[int, str | None, dict[str, Any]]  # (slot, event name or None: ended, data)


def slot_fields(run: CompareRun, slot: int, turn: Turn) -> dict[str, Any]:
    return {"slot": slot, "turn_id": turn.id, **({} if run.blind else {"model": turn.model})}


def meta(run: CompareRun) -> dict[str, Any]:
    return {"chat_id": run.chat_id, "compare_id": run.id, "mode": run.mode,
            "blind": run.blind,
            "slots": [slot_fields(run, slot, turn) for slot, turn in enumerate(run.slots)]}


async def compare_stream(run: CompareRun, turns: ChatTurns) -> AsyncIterator[str]:
    yield sse_event("meta", meta(run))
    queue: asyncio.Queue[_SlotEvent] = asyncio.Queue()

    async def pump(slot: int, turn: Turn) -> None:
        async with contextlib.aclosing(turn_events(turn, turns)) as events:
            async for item in events:
                if item is not None and item[0] != "meta":
                    queue.put_nowait((slot, item[0], item[1]))
        queue.put_nowait((slot, None, {}))

    pumps = [asyncio.create_task(pump(slot, turn)) for slot, turn in enumerate(run.slots)]
    running = len(pumps)
    try:
        while running:
            try:
                slot, name, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if name is None:
                running -= 1
                continue
            yield sse_event(name, {**data, **slot_fields(run, slot, run.slots[slot])})
    finally:  # closing a pump's events stops its slot if it is still running
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def compare_finals(run: CompareRun) -> list[dict[str, Any]]:
    """For stream=false: every slot's end (done or error), in slot order."""
    ends = await asyncio.gather(*(final_event(turn) for turn in run.slots))
    slots = []
    for slot, (turn, (name, data)) in enumerate(zip(run.slots, ends, strict=True)):
        fields = slot_fields(run, slot, turn)
        if name == "done":
            slots.append({**fields, "content": data["content"],
                          "finish_reason": data["finish_reason"]})
        else:
            slots.append({**fields, "error": data})
    return slots
