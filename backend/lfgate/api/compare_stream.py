"""A compare's slots as one SSE stream: each slot's events (those of /api/chat) with its
`slot` (and, unless blind, its `model`), interleaved as they come; one slot's error ends
only that slot. A client that goes away leaves every slot running; it reattaches with the
last event id it saw (GET /api/compare/{compare_id}/stream)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi.exceptions import RequestValidationError

from lfgate.api.sse import KEEPALIVE_S, RETRY_MS, final_event, sse_event, turn_events
from lfgate.services.chat.turn_recorder import Turn
from lfgate.services.chat.turns import ChatTurns
from lfgate.services.evals.compare import CompareRun

# (slot, its event id, event name or None: the slot ended, data)
_SlotEvent = tuple[int, int, str | None, dict[str, Any]]


def slot_fields(run: CompareRun, slot: int, turn: Turn) -> dict[str, Any]:
    return {"slot": slot, "turn_id": turn.id, **({} if run.blind else {"model": turn.model})}


def meta(run: CompareRun) -> dict[str, Any]:
    return {"chat_id": run.chat_id, "compare_id": run.id, "mode": run.mode,
            "blind": run.blind,
            "slots": [slot_fields(run, slot, turn) for slot, turn in enumerate(run.slots)]}


COMPARE_EVENT_ID = r"^[0-9]{1,10}(\.[0-9]{1,10}){1,3}$"  # every slot's last event id


def slot_ids(header: str | None, slots: int) -> list[int]:
    """Where a reattaching client left off in each slot: a compare event's id is every
    slot's last event id, dot-separated ("12.9.30"), so one Last-Event-ID says it all."""
    if not header:
        return [0] * slots
    seen = [int(part) for part in header.split(".")]
    if len(seen) != slots:
        raise RequestValidationError([{
            "type": "value_error", "loc": ("header", "Last-Event-ID"), "input": header,
            "msg": f"this compare has {slots} slots: send {slots} event ids joined by dots"}])
    return seen


async def compare_stream(run: CompareRun, turns: ChatTurns,
                         after: list[int] | None = None) -> AsyncIterator[str]:
    """Every slot's events after `after` (each slot's last event id), then as they come;
    the compare goes on if the client leaves (stop it with its stop route)."""
    seen = list(after or [0] * len(run.slots))
    yield f"retry: {RETRY_MS}\n\n"
    yield sse_event("meta", meta(run))
    queue: asyncio.Queue[_SlotEvent] = asyncio.Queue()

    async def pump(slot: int, turn: Turn) -> None:
        async with contextlib.aclosing(turn_events(turn, turns, after=seen[slot])) as events:
            async for item in events:
                if item is not None and item[1][0] != "meta":
                    queue.put_nowait((slot, item[0], *item[1]))
        queue.put_nowait((slot, 0, None, {}))

    pumps = [asyncio.create_task(pump(slot, turn)) for slot, turn in enumerate(run.slots)]
    running = len(pumps)
    try:
        while running:
            try:
                slot, event_id, name, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if name is None:
                running -= 1
                continue
            seen[slot] = event_id
            yield sse_event(name, {**data, **slot_fields(run, slot, run.slots[slot])},
                            ".".join(map(str, seen)))
    finally:
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
