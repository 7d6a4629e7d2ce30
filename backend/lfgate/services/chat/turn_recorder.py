"""A turn and what happens to its events: each event of the box becomes an API event on the
turn's queue, and the reply is stored as it grows (at least once a second) and when it ends,
with its provenance. One place, whether the turn runs alone or as a row of a batch."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from lfgate.box.errors import BoxError
from lfgate.box.session import WrapperSession
from lfgate.remote import wrapper_protocol as wp
from lfgate.services.chat.api_conversations import thread_digest
from lfgate.services.chat.turn_log import ApiEvent, TurnLog
from lfgate.services.models.catalog import ModelSpec
from lfgate.services.models.fleet_registry import FleetRegistry
from lfgate.storage.chat_store import ChatStore
from lfgate.storage.storable import storable_value

__all__ = ["ApiEvent", "Turn", "TurnRecorder"]
SAVE_EVERY_S = 1.0  # a growing reply is written at least this often
# The box went away under the reply: the link, the wrapper or the CLI behind it.
CUT_OFF_CODES = frozenset({"box_unreachable", "wrapper_exited", "cli_exited"})


@dataclass
class Turn:
    id: str  # the reply's message id (a turn that is not stored: an id of its own)
    chat_id: str | None  # None: not stored (an OpenAI API request, STORE_API_CHATS off)
    model: str
    spec: ModelSpec  # as it was when the turn began (a rescan may drop the model later)
    exclusive: bool = True  # holds its chat (a page chat answers one message at a time)
    thread: list[dict[str, str]] | None = None  # an API request's messages, to find it again
    log: TurnLog = field(default_factory=TurnLog)  # its API events, for every reader
    # Set once the box is serving the turn or has failed it: an API that must answer a box
    # that is down with a status code waits for this before it starts a stream.
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    # Set at its first text or its end: what a streamed API request waits for before its
    # headers, so a refusal the box makes before any text (a prompt over the model's window)
    # is a status code, as OpenAI answers it, rather than an error inside a 200 stream.
    answering: asyncio.Event = field(default_factory=asyncio.Event)
    error: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)
    finished: bool = False
    stop_requested: bool = False
    session: WrapperSession | None = None
    task: asyncio.Task[None] | None = None
    text: list[str] = field(default_factory=list)
    notices: list[dict[str, str]] = field(default_factory=list)  # the box's `info` events
    tags: dict[str, Any] = field(default_factory=dict)  # kept in its provenance (a compare slot)
    # Function definitions offered to the model (protocol 5; an OpenAI request's `tools`).
    tools: list[dict[str, Any]] | None = None
    # Raw text to continue (protocol 5's completion: /v1/completions), not a conversation.
    completion: dict[str, Any] | None = None
    ttft_ms: float | None = None
    saved_at: float = field(default_factory=time.monotonic)
    ended: bool = False  # its done or error event is out: a stream ends with exactly one

    @property
    def fit(self) -> str:
        """What the box does with a prompt over the model's window (protocol 6): a page
        chat's earliest turns are left out (its reply's provenance says how many); an API
        request is refused, as OpenAI refuses it."""
        page = self.chat_id is not None and self.thread is None and self.completion is None
        return wp.FIT_DROP_OLDEST if page else wp.FIT_REFUSE

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.log.append(name, data)
        if name in ("done", "error"):
            self.ended = True
        if name in ("delta", "done", "error"):
            self.answering.set()


    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)


class TurnRecorder:
    def __init__(self, registry: FleetRegistry, store: ChatStore) -> None:
        self._registry = registry
        self._store = store

    async def save(self, turn: Turn, **changes: Any) -> None:
        """The reply as it stands, for a stored turn (an unstored API turn keeps nothing)."""
        if turn.chat_id is not None:
            await self._store.update_message(message_id=turn.id, **changes)

    async def on_event(self, turn: Turn, event: dict[str, Any], params: dict[str, Any]) -> None:
        # What the box says is kept whatever it holds: a NUL or an unpaired surrogate becomes
        # U+FFFD here, so what streams is what is stored, on every database.
        event = storable_value(event)
        kind = event["event"]
        if kind == wp.EV_DELTA:
            if turn.ttft_ms is None:
                turn.ttft_ms = turn.elapsed_ms()
            turn.text.append(event["text"])
            delta: dict[str, Any] = {"text": event["text"]}
            if isinstance((event.get("logprobs") or {}).get("content"), list):
                delta["logprobs"] = event["logprobs"]  # a chat's, streamed (/v1 logprobs)
            turn.emit("delta", delta)
            if time.monotonic() - turn.saved_at >= SAVE_EVERY_S:
                turn.saved_at = time.monotonic()
                await self.save(turn, content="".join(turn.text))
        elif kind == wp.EV_INFO:
            notice = {"code": event["code"], "message": event["message"]}
            turn.notices.append(notice)  # facts about this reply: kept in its provenance
            turn.emit("info", notice)
        elif kind == wp.EV_DONE:
            turn.text = [event["content"]]
            await self.finish(turn, event["finish_reason"], params,
                              event["timing"].get("chunks", 0), event)
        elif kind == wp.EV_ERROR:
            await self.fail(turn, {"code": event.get("code"), "message": event.get("message"),
                                   "hint": event.get("hint", "")}, params)

    def provenance(self, turn: Turn, params: dict[str, Any]) -> dict[str, Any]:
        spec = turn.spec
        hello = turn.session.hello if turn.session is not None else {}
        facts = {} if spec.facts is None else {"run": spec.facts.run, "step": spec.facts.step}
        box = self._registry.settings_for(turn.model)
        return {
            "model": turn.model, "mode": box.chat_mode, "box": box.box_name,
            "host": box.host_label, "base_model_path": spec.base_model_path,
            "adapter_path": spec.adapter_path, "template": spec.template,
            "finetuning_type": spec.finetuning_type, "infer_backend": spec.infer_backend,
            "shared_base": self._registry.shares_base(spec), **facts,
            "params": params, "wrapper_version": hello.get("wrapper"),
            "protocol": hello.get("protocol"),
            **({"notices": turn.notices} if turn.notices else {}),
            **({"tools": turn.tools} if turn.tools else {}), **turn.tags,
        }

    async def finish(self, turn: Turn, finish_reason: str, params: dict[str, Any],
                     chunks: int, box_event: dict[str, Any] | None = None) -> None:
        content = "".join(turn.text)
        done: dict[str, Any] = {
            "content": content,
            "finish_reason": finish_reason,
            "timing": {"ttft_ms": turn.ttft_ms, "total_ms": turn.elapsed_ms(),
                       "chunks": chunks},
        }
        if box_event is not None:
            done["box_timing"] = box_event.get("timing")
            if "usage" in box_event:
                done["usage"] = box_event["usage"]
            if "batch" in box_event:
                done["batch"] = box_event["batch"]
            if box_event.get("tool_calls"):
                done["tool_calls"] = box_event["tool_calls"]
            if box_event.get("logprobs") is not None:
                done["logprobs"] = box_event["logprobs"]
            if box_event.get("left_out"):
                done["left_out"] = box_event["left_out"]
        provenance = {**self.provenance(turn, params), "finish_reason": finish_reason,
                      **{k: done[k] for k in ("timing", "box_timing", "usage", "batch",
                                              "tool_calls", "left_out") if k in done}}
        status = "stopped" if finish_reason == wp.FINISH_STOPPED else "complete"
        digest = None
        if turn.thread is not None and status == "complete":  # its next request finds it
            digest = thread_digest(params.get("system"), [
                *turn.thread, {"role": "assistant", "content": content}])
        await self.save(turn, content=content, status=status, provenance=provenance,
                        **({"thread_digest": digest} if digest else {}))
        turn.emit("done", done)

    async def fail(self, turn: Turn, error: dict[str, Any], params: dict[str, Any]) -> None:
        """The turn ends with `error`. A reply cut off by the box going away (the link lost,
        the wrapper killed) keeps what arrived as `interrupted`, as a gateway that died
        mid-reply leaves it; any other error is the reply's `error`."""
        turn.error = error
        if error.get("code") in wp.MODEL_UNUSABLE_CODES:  # it would fail the same way again
            self._registry.refuse(turn.model, BoxError(
                str(error.get("message") or error["code"]), hint=str(error.get("hint") or ""),
                code=str(error["code"])))
        cut_off = error.get("code") in CUT_OFF_CODES and turn.text
        await self.save(turn, content="".join(turn.text),
                        status="interrupted" if cut_off else "error",
                        provenance={**self.provenance(turn, params), "error": error})
        turn.emit("error", error)
