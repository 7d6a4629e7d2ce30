"""One persistent wrapper on the box serving one model: the gateway's side of the protocol.

A reader task routes each event to whoever waits for its id (a chat turn's queue, or a
load/unload future). When the wrapper goes away every waiter gets the same error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from lfgate.box.errors import BoxError, BoxTimeout, ProtocolMismatch, RemoteError, WrapperExited
from lfgate.box.process import BoxProcess
from lfgate.remote import wrapper_protocol as wp

HELLO_TIMEOUT_S = 60.0  # Python start-up on a busy box; the wrapper imports nothing heavy first
_TURN_END = (wp.EV_DONE, wp.EV_ERROR)


def remote_error(event: dict[str, Any]) -> RemoteError:
    return RemoteError(str(event.get("message", "")), code=str(event.get("code", "remote_error")),
                       hint=str(event.get("hint", "")))


async def _next(queue: asyncio.Queue[dict[str, Any]], idle_timeout_s: float | None
                ) -> dict[str, Any]:
    """A turn's next event; a box silent for `idle_timeout_s` is a BoxTimeout."""
    try:
        return await asyncio.wait_for(queue.get(), idle_timeout_s)
    except TimeoutError:
        raise BoxTimeout(f"the box sent nothing for this reply in {idle_timeout_s:g} s "
                         "(CHAT_TIMEOUT); it was stopped there") from None


class WrapperSession:
    """Talks to one wrapper process; safe to call from many request handlers at once."""

    def __init__(self, process: BoxProcess, hello: dict[str, Any]) -> None:
        self._process = process
        self.hello = hello
        self._routes: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._gone: BoxError | None = None
        # What the wrapper last said it holds (base, adapters, bytes): every event that
        # carries `held` updates it, so status needs no round trip.
        self.held: dict[str, Any] = {}
        self._reader = asyncio.create_task(self._read_events())

    @classmethod
    async def open(cls, process: BoxProcess, expect_mode: str) -> WrapperSession:
        """Wait for the wrapper's hello and refuse a wrapper that speaks another protocol."""
        try:
            line = await asyncio.wait_for(process.read_line(), HELLO_TIMEOUT_S)
        except TimeoutError:
            await process.close()
            raise BoxTimeout(f"the wrapper said nothing for {HELLO_TIMEOUT_S:.0f} s") from None
        hello: dict[str, Any] = {}
        with contextlib.suppress(ValueError, TypeError):
            hello = json.loads(line or "")
        if not isinstance(hello, dict) or hello.get("event") != wp.EV_HELLO:
            await process.close()
            detail = process.stderr.tail() or (line or "").strip()[:500] or "no output"
            raise WrapperExited(f"the wrapper did not start: {detail}")
        if hello.get("protocol") != wp.PROTOCOL_VERSION or hello.get("mode") != expect_mode:
            await process.close()
            raise ProtocolMismatch(
                f"the wrapper speaks protocol {hello.get('protocol')!r} in mode "
                f"{hello.get('mode')!r} (version {hello.get('wrapper')!r}); this gateway needs "
                f"protocol {wp.PROTOCOL_VERSION} in mode {expect_mode!r}")
        return cls(process, hello)

    @property
    def features(self) -> list[str]:
        return list(self.hello.get("features") or [])

    @property
    def alive(self) -> bool:
        return self._gone is None

    @property
    def gone(self) -> BoxError | None:
        """Why the wrapper went away (None while it serves)."""
        return self._gone

    @property
    def stderr_tail(self) -> str:
        return self._process.stderr.tail()

    async def _read_events(self) -> None:
        broken: BoxError | None = None
        while (line := await self._process.read_line()) is not None:
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                self._process.stderr.add(f"[not a protocol line] {line}")
                continue
            problem = wp.event_problem(event)
            if problem is not None:
                # JSON, but not an event as the protocol writes it (not an object, no name, a
                # field missing or of another type): whoever waits for its answers would wait
                # until CHAT_TIMEOUT, or fail on the field far from here. The wrapper ends.
                broken = ProtocolMismatch(
                    f"the wrapper broke the protocol ({problem}) in this line: "
                    f"{wp.as_text(line.strip()[:200])}",
                    hint="A custom CHAT_SCRIPT_PATH wrapper must write one JSON object per "
                         "line, as docs/protocol.md describes; unset it to use the gateway's "
                         "own.")
                break
            # Text a store can keep (a NUL, or a non-UTF-8 path's lone surrogates: U+FFFD).
            event = wp.as_text(event)
            if isinstance(event.get("held"), dict):
                self.held = event["held"]
            route = self._routes.get(str(event.get("id")))
            if route is not None:
                route.put_nowait(event)
        # Gone at once (no new request goes to it), then why, for every waiter: the link lost,
        # the wrapper killed or exited (that takes the box's word, a few seconds at most).
        self._gone = broken or WrapperExited("the wrapper on the box exited")
        if broken is not None:
            await self._process.close()
        else:
            self._gone = await self._process.ended_error()
        for route in self._routes.values():
            route.put_nowait({"event": wp.EV_ERROR, **self._gone.as_dict()})

    async def _send(self, command: dict[str, Any]) -> None:
        if self._gone is not None:
            raise self._gone
        await self._process.send_line(wp.encode(command))

    async def _request(self, command: dict[str, Any], answers: tuple[str, ...],
                       timeout_s: float) -> dict[str, Any]:
        request_id = f"r{next(self._ids)}"
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._routes[request_id] = queue
        try:
            await self._send({**command, "id": request_id})
            async with asyncio.timeout(timeout_s):
                while True:
                    event = await queue.get()
                    if event["event"] == wp.EV_ERROR:
                        raise remote_error(event)
                    if event["event"] in answers:
                        return event
        except TimeoutError:
            raise BoxTimeout(f"no answer to {command['op']!r} in {timeout_s:.0f} s") from None
        finally:
            del self._routes[request_id]

    async def load(self, model: dict[str, Any], params: dict[str, Any],
                   timeout_s: float, max_adapters: int = 4,
                   max_batch_rows: int = 16) -> dict[str, Any]:
        command = {"op": wp.OP_LOAD, "model": model, "params": params, "timeout_s": timeout_s,
                   "max_adapters": max_adapters, "max_batch_rows": max_batch_rows}
        return await self._request(command, (wp.EV_READY,), timeout_s + 30)

    async def load_adapter(self, path: str, timeout_s: float) -> dict[str, Any]:
        """Bring an adapter onto the loaded base ahead of its first chat."""
        return await self._request({"op": wp.OP_LOAD_ADAPTER, "path": path},
                                   (wp.EV_ADAPTER_LOADED,), timeout_s)

    async def unload_adapter(self, path: str, timeout_s: float = 60) -> dict[str, Any]:
        return await self._request({"op": wp.OP_UNLOAD_ADAPTER, "path": path},
                                   (wp.EV_ADAPTER_UNLOADED,), timeout_s)

    async def unload(self, timeout_s: float = 60) -> None:
        await self._request({"op": wp.OP_UNLOAD}, (wp.EV_UNLOADED,), timeout_s)

    async def chat(self, turn_id: str, messages: list[dict[str, str]],
                   params: dict[str, Any], choice: dict[str, Any] | None = None,
                   idle_timeout_s: float | None = None,
                   tools: list[dict[str, Any]] | None = None,
                   completion: dict[str, Any] | None = None, fit: str | None = None
                   ) -> AsyncIterator[dict[str, Any]]:
        """The turn's events (info, delta, then done or error). Leaving early cancels it.
        `choice` names the adapter (None: the base) and template on a shared base; `tools`
        are the function definitions offered to the model, `completion` raw text to continue
        instead of the messages (protocol 5), `fit` what a prompt over the model's window
        gets (protocol 6; None: refused). A turn the box says nothing about for
        `idle_timeout_s` is cancelled there and fails."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._routes[turn_id] = queue
        finished = False
        try:
            await self._send({"op": wp.OP_CHAT, "id": turn_id, "messages": messages,
                              "params": params, **(choice or {}),
                              **({"tools": tools} if tools else {}),
                              **({"completion": completion} if completion else {}),
                              **({"fit": fit} if fit else {})})
            while not finished:
                event = await _next(queue, idle_timeout_s)
                finished = event["event"] in _TURN_END
                yield event
        finally:
            if not finished:
                await asyncio.shield(self.cancel(turn_id))
            self._routes.pop(turn_id, None)

    async def chat_batch(self, batch_id: str, rows: list[dict[str, Any]],
                         params: dict[str, Any], idle_timeout_s: float | None = None,
                         fit: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Protocol 4: several chats (rows: id, messages, adapter, template) answered by one
        generate call. Every row's events, each under its row's id, as they come, until each
        row has its done or error; leaving early cancels the rows still running, as does
        `idle_timeout_s` without any event (then it fails)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        ids = [row["id"] for row in rows]
        for row_id in ids:
            self._routes[row_id] = queue
        running = set(ids)
        try:
            await self._send({"op": wp.OP_CHAT_BATCH, "id": batch_id, "rows": rows,
                              "params": params, **({"fit": fit} if fit else {})})
            while running:
                event = await _next(queue, idle_timeout_s)
                row_id = event.get("id")
                if row_id is None and event["event"] == wp.EV_ERROR:
                    for gone in sorted(running):  # the wrapper went away: every row's error
                        yield {**event, "id": gone}
                    running.clear()
                    break
                if row_id not in running:
                    continue
                if event["event"] in _TURN_END:
                    running.discard(row_id)
                yield event
        finally:
            for row_id in sorted(running):
                await asyncio.shield(self.cancel(row_id))
            for row_id in ids:
                self._routes.pop(row_id, None)

    async def cancel(self, turn_id: str) -> None:
        with contextlib.suppress(BoxError):
            await self._send({"op": wp.OP_CANCEL, "id": turn_id})

    async def close(self) -> None:
        await self._process.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._reader, 5)
