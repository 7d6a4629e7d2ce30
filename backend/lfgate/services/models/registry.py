"""The models the gateway offers and the wrapper processes that serve them.

A model (lfgate.services.models.catalog.ModelSpec) is served by a slot: one wrapper process on
the box. In script mode every LoRA model on the same base shares one slot, which loads the
base once and brings each chat's adapter in on first use (protocol 2); anything else (CLI
mode, a merged multi-adapter ADAPTER_PATH, other finetuning types or engines) has a slot of
its own. CLI slots are bounded (MAX_CLI_SESSIONS, least recently used shut down first).

Loading runs in the background (the HTTP call returns at once); a chat for a model that is
not loaded waits for the same load (an adapter whose base is not loaded: the base's, then its
own), so the model reads `loading` from the moment it is asked for until it can answer. A
slot whose wrapper died is reloaded on next use.

Load times are the user's wait, measured here rather than by the wrapper: a slot's covers the
wrapper's start as well as LlamaFactory's load (`load_phases` says where it went), and an
adapter that had to wait for its base counts the base's load too (see ModelEntry.load_seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lfgate.box.box import Box
from lfgate.box.errors import BoxError
from lfgate.box.session import WrapperSession
from lfgate.box_list import ID_SEPARATOR
from lfgate.config import Settings
from lfgate.services.errors import ModelUnusable, UnknownModel
from lfgate.services.models.catalog import (
    SHAREABLE_PEFT_TYPES,
    Catalog,
    ModelSpec,
    build_catalog,
    on_box,
    readable,
)

ModelStatus = Literal["unloaded", "loading", "ready", "error"]


@dataclass
class ServingSlot:
    """One wrapper process on the box: a base shared by its adapters, or one model alone."""

    key: str
    shared: bool
    load_spec: ModelSpec  # what the wrapper loads (a shared slot: the base, no adapter)
    status: ModelStatus = "unloaded"
    error: BoxError | None = None
    # The error came from LlamaFactory loading the model (the box and wrapper were fine).
    load_failed: bool = False
    load_seconds: float | None = None
    load_phases: dict[str, float] = field(default_factory=dict)
    load_started: float | None = None  # time.monotonic() when its latest load was asked for
    session: WrapperSession | None = None
    active_turns: int = 0
    last_used: float = 0.0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def refresh(self) -> None:
        """A ready slot whose wrapper died is an error until it is loaded again."""
        if self.status == "ready" and self.session is not None and not self.session.alive:
            self.status = "error"
            self.error = self.session.gone or BoxError(
                f"the wrapper exited: {self.session.stderr_tail}", code="wrapper_exited")

    def held_adapter(self, spec: ModelSpec) -> dict[str, Any] | None:
        """The wrapper's own report of the spec's adapter resident on this slot's base: by
        the exact path it was given, else by the path as shown (a wrapper reports a name that
        is not UTF-8 as text, each such byte U+FFFD, as the listing shows it)."""
        held = self.session.held if self.session is not None else {}
        adapters = [a for a in held.get("adapters") or [] if isinstance(a, dict)]
        exact, shown = spec.box_adapter_path, spec.adapter_path
        return next((a for a in adapters if a.get("path") == exact),
                    next((a for a in adapters if a.get("path") == shown), None))

    def holds_adapter(self, spec: ModelSpec) -> bool:
        return self.held_adapter(spec) is not None


@dataclass
class ModelEntry:
    spec: ModelSpec
    slot: ServingSlot
    adapter_task: asyncio.Task[None] | None = field(default=None, repr=False)
    adapter_error: BoxError | None = None
    # An adapter on a shared base, as of its latest load: when it was asked for, and whether
    # its base was not loaded yet then (its wait was the base's load, then its own).
    adapter_asked: float | None = None
    waited_for_base: bool = False
    # A reply failed in a way that will not clear (wp.MODEL_UNUSABLE_CODES): the model is
    # unusable, with this reason, until its files change or a load is asked for again.
    refused: BoxError | None = None

    @property
    def problems(self) -> tuple[str, ...]:
        """Why it cannot be chosen: the listing's problems, and a refusal the box gave."""
        return (*self.spec.problems, *([self.refused.message] if self.refused else []))

    @property
    def usable(self) -> bool:
        return not self.problems

    @property
    def shared_adapter(self) -> bool:
        """An adapter brought onto a shared base per chat (not loaded as its own model)."""
        return self.slot.shared and self.spec.adapter_path is not None

    @property
    def status(self) -> ModelStatus:
        self.slot.refresh()
        if self.refused is not None:
            return "error"
        if not self.shared_adapter or self.slot.status != "ready":
            return self.slot.status
        if self.adapter_task is not None and not self.adapter_task.done():
            return "loading"
        if self.adapter_error is not None:
            return "error"
        assert self.spec.adapter_path is not None
        return "ready" if self.slot.holds_adapter(self.spec) else "unloaded"

    @property
    def error(self) -> BoxError | None:
        if self.refused is not None:
            return self.refused
        if self.shared_adapter and self.slot.status == "ready":
            return self.adapter_error
        return self.slot.error

    @property
    def adapter_seconds(self) -> float | None:
        """An adapter on a shared base: its own load onto the base, as the wrapper timed it
        (None for anything else, or while it is not resident)."""
        if self.shared_adapter and self.slot.status == "ready" and self.spec.adapter_path:
            held = self.slot.held_adapter(self.spec)
            return None if held is None else held.get("load_seconds")
        return None

    @property
    def base_already_loaded(self) -> bool:
        """An adapter brought onto a base that was loaded before it was asked for (for another
        model): its load time is its own alone, since the base's load was not its wait."""
        return self.shared_adapter and not self.waited_for_base

    @property
    def load_seconds(self) -> float | None:
        """How long this model took to become usable. Anything with a slot of its own (or a
        base): its slot's load, wrapper start included. An adapter on a shared base: the
        base's load plus its own when it had to wait for the base, else its own alone (see
        base_already_loaded), never the adapter's few milliseconds passed off as the whole."""
        if not self.shared_adapter:
            return self.slot.load_seconds
        own = self.adapter_seconds
        if own is None or not self.waited_for_base:
            return own
        if self.slot.load_seconds is None:
            return None
        return round(self.slot.load_seconds + own, 3)

    @property
    def load_phases(self) -> dict[str, float]:
        """Where load_seconds went: the slot's connect/upload/start/load, and `adapter_s` for
        an adapter on a shared base (alone, when its base was loaded already)."""
        if not self.shared_adapter:
            return dict(self.slot.load_phases)
        phases = dict(self.slot.load_phases) if self.waited_for_base else {}
        own = self.adapter_seconds
        if own is not None:
            phases["adapter_s"] = own
        return phases

    def loading_seconds(self, now: float) -> float | None:
        """While it loads, how long its load has run, counted as load_seconds will be (from
        its base's start when it waits for its base): a page that first looks mid-load
        counts from the real start, not from when it looked."""
        if self.status != "loading":
            return None
        started = self.slot.load_started
        if self.shared_adapter and self.slot.status == "ready" and not self.waited_for_base:
            started = self.adapter_asked
        return None if started is None else round(max(0.0, now - started), 3)

    def choice(self) -> dict[str, Any] | None:
        """What a chat on a shared slot names: its adapter (None: the base), by its exact
        path on the box, and template."""
        if not self.slot.shared:
            return None
        return {"adapter": self.spec.box_adapter_path, "template": self.spec.template}


def _as_text(error: BoxError) -> BoxError:
    """The box's words as text: a wrapper of another make may echo a path whose name is not
    UTF-8 as it was given it, which no answer or store can hold (lfgate's own writes text)."""
    message, hint = readable(error.message), readable(error.hint)
    if (message, hint) != (error.message, error.hint):
        error.message, error.hint, error.args = message, hint, (message,)
    return error


def _did_not_load(model_id: str, error: BoxError) -> BoxError:
    """A reply's error when its model failed to load: what failed, then the box's words."""
    return type(error)(f"model {model_id!r} did not load on the box: {error.message}",
                       hint=error.hint, code=error.code)


@dataclass(frozen=True)
class Served:
    session: WrapperSession
    choice: dict[str, Any] | None
    slot: ServingSlot


class ModelRegistry:
    """One box's models and slots. `id_prefix` (`name:`) marks the ids of a box other than
    the .env's own (lfgate.box_list), so ids stay apart across boxes."""

    def __init__(self, box: Box, settings: Settings, id_prefix: str = "") -> None:
        self._box = box
        self._settings = settings
        self.id_prefix = id_prefix
        self._slots: dict[str, ServingSlot] = {}
        self._entries: dict[str, ModelEntry] = {}
        self.catalog = Catalog([])
        self.replace_catalog(build_catalog(settings, None))

    @property
    def box(self) -> Box:
        return self._box

    @property
    def settings(self) -> Settings:
        """This box's settings (its mode, host and limits)."""
        return self._settings

    def owns(self, model_id: str) -> bool:
        """Whether the id is one of this box's (by its box prefix; the .env's box owns the
        ids without one)."""
        if self.id_prefix:
            return model_id.startswith(self.id_prefix)
        return ID_SEPARATOR not in model_id

    # -- what is offered -------------------------------------------------------------------

    def shares_base(self, spec: ModelSpec) -> bool:
        """Whether the model can ride on its base's shared slot (protocol 2 adapters). Never
        with vLLM or SGLang: LlamaFactory gives those engines one adapter, at load."""
        facts = spec.facts
        return (self._settings.chat_mode == "script" and spec.infer_backend == "huggingface"
                and spec.finetuning_type == "lora"
                and (spec.adapter_path is None or "," not in spec.adapter_path)
                and (facts is None or facts.peft_type in SHAREABLE_PEFT_TYPES))

    def _slot_for(self, spec: ModelSpec) -> ServingSlot:
        if self.shares_base(spec):
            key = f"base:{os.path.normpath(spec.box_base_model_path)}"
            load_spec = replace(spec, adapter_path=None, exact_adapter_path=None)
            shared = True
        else:
            key, load_spec, shared = f"model:{spec.id}:{spec.adapter_path}", spec, False
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = ServingSlot(key, shared, load_spec)
        return slot

    def replace_catalog(self, catalog: Catalog) -> None:
        """A new listing (a rescan): models keep their slots and state; gone ones go."""
        catalog = on_box(catalog, self._settings.box_name, self.id_prefix)
        entries: dict[str, ModelEntry] = {}
        for spec in catalog.specs:
            old = self._entries.get(spec.id)
            slot = self._slot_for(spec)
            if old is not None and old.slot is slot:
                if old.spec != spec:  # its files changed: a refusal may no longer hold
                    old.refused = None
                old.spec = spec
                entries[spec.id] = old
            else:
                entries[spec.id] = ModelEntry(spec, slot)
        self._entries, self.catalog = entries, catalog

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def slots(self) -> list[ServingSlot]:
        for slot in self._slots.values():
            slot.refresh()
        return [s for s in self._slots.values() if s.status != "unloaded" or s.session]

    def get(self, model_id: str) -> ModelEntry:
        entry = self._entries.get(model_id)
        if entry is None:
            known = ", ".join(list(self._entries)[:20])
            more = "" if len(self._entries) <= 20 else f" (and {len(self._entries) - 20} more)"
            raise UnknownModel(f"unknown model {model_id!r}; known: {known}{more}")
        return entry

    def usable(self, model_id: str) -> ModelEntry:
        """The entry, if it can be chosen; a broken adapter says why it cannot."""
        entry = self.get(model_id)
        if entry.problems:
            raise ModelUnusable(f"model {model_id!r} cannot be used: "
                                + "; ".join(entry.problems), hint=entry.refused
                                and entry.refused.hint)
        return entry

    def refuse(self, model_id: str, error: BoxError) -> None:
        """A reply of this model failed in a way that will not clear: it is unusable, with
        the box's reason, until its files change or a load is asked for (start_load)."""
        entry = self._entries.get(model_id)
        if entry is not None:
            entry.refused = error

    # -- loading ---------------------------------------------------------------------------

    def start_load(self, model_id: str, params: dict[str, Any] | None = None, *,
                   again: bool = False) -> ModelEntry:
        """Load in the background. `params` are those of the chat that asks: in CLI mode they
        become llamafactory-cli's start-up flags, so its first reply needs no restart. They
        are no defaults for later turns (each turn sends all of its own). `again`: a user
        asks for it, so a refusal the box gave (`refuse`) is tried once more."""
        if again:
            self.get(model_id).refused = None
        entry = self.usable(model_id)
        slot = entry.slot
        slot.refresh()
        now = slot.last_used = time.monotonic()
        base_ready = slot.status == "ready"
        if slot.status not in ("loading", "ready"):
            slot.status, slot.error, slot.load_seconds = "loading", None, None
            slot.load_started = now
            slot.task = asyncio.create_task(self._load(slot, params or {}),
                                            name=f"load {slot.key}")
        if entry.shared_adapter and entry.status in ("unloaded", "error", "loading") and (
                entry.adapter_task is None or entry.adapter_task.done()):
            entry.adapter_error = None
            entry.adapter_asked, entry.waited_for_base = now, not base_ready
            entry.adapter_task = asyncio.create_task(self._load_adapter(entry),
                                                     name=f"adapter {model_id}")
        return entry

    async def ready_session(self, model_id: str, params: dict[str, Any]) -> Served:
        """The model's session and the choice its chats name, once the model can answer;
        raises the load's BoxError. A slot not loaded is loaded first, and an adapter on it
        waits for that load and then loads too (ahead of the chat, so it reads `loading` until
        it can answer, never mid-reply, and its load time counts its base's), as does one
        already being loaded. An adapter not resident on a base that is loaded already is
        brought in by the wrapper on the chat's way in: no round trip of its own."""
        entry = self.usable(model_id)
        slot = entry.slot
        slot.refresh()
        if slot.status != "ready":
            self.start_load(model_id, params)  # its base, then (on a shared base) itself
        elif entry.shared_adapter and entry.status in ("unloaded", "error"):
            # Its own load alone this time (a failed one before is tried again by the chat).
            entry.adapter_error, entry.waited_for_base = None, False
        slot.last_used = time.monotonic()
        if slot.task is not None and not slot.task.done():
            await asyncio.shield(slot.task)
        if slot.status != "ready" or slot.session is None:
            error = slot.error or BoxError("the model is not loaded")
            if slot.load_failed:  # a reply's error says what failed; the box's words follow
                raise _did_not_load(model_id, error)
            raise error
        if entry.adapter_task is not None and not entry.adapter_task.done():
            # Waited on, not awaited: an unload cancels the adapter's load (the chat then brings
            # the adapter itself), and a chat stopped meanwhile leaves it running for others.
            await asyncio.wait([entry.adapter_task])
        session = slot.session
        if session is None:
            raise slot.error or BoxError("the model was unloaded before it could answer")
        if entry.shared_adapter and entry.adapter_error is not None:
            error = entry.adapter_error  # the box's words, unless the wrapper itself went
            raise _did_not_load(model_id, error) if session.alive else error
        return Served(session, entry.choice(), slot)

    async def _load(self, slot: ServingSlot, params: dict[str, Any]) -> None:
        started = slot.load_started or time.monotonic()
        await self._drop_session(slot)
        await self._make_room(slot)
        session = None
        slot.load_phases = phases = {}
        slot.load_failed = False
        try:
            session = await self._box.start_wrapper(phases)
            spec = slot.load_spec.for_wrapper(self._settings.llamafactory_cli_path)
            load_started = time.monotonic()
            await session.load(spec, params, self._settings.chat_timeout,
                               max_adapters=self._settings.max_loaded_adapters,
                               max_batch_rows=self._settings.max_batch_rows)
            phases["load_s"] = round(time.monotonic() - load_started, 3)
        except BoxError as exc:
            if session is not None:
                await session.close()
            slot.status, slot.error = "error", _as_text(exc)
            slot.load_failed = session is not None
            return
        except asyncio.CancelledError:
            if session is not None:
                await asyncio.shield(session.close())
            slot.status = "unloaded"
            raise
        slot.session, slot.status = session, "ready"
        slot.load_seconds = round(time.monotonic() - started, 3)

    async def _load_adapter(self, entry: ModelEntry) -> None:
        slot = entry.slot
        if slot.task is not None and not slot.task.done():
            await asyncio.shield(slot.task)
        path = entry.spec.box_adapter_path
        if slot.status != "ready" or slot.session is None or path is None:
            return
        try:
            await slot.session.load_adapter(path, self._settings.chat_timeout)
        except BoxError as exc:
            entry.adapter_error = _as_text(exc)

    async def _make_room(self, slot: ServingSlot) -> None:
        """CLI mode: at most MAX_CLI_SESSIONS processes, each holding a model; the least
        recently used idle one is shut down to make room (a busy one never is)."""
        if self._settings.chat_mode != "cli":
            return
        while True:
            others = [s for s in self._slots.values() if s is not slot
                      and (s.session is not None or s.status == "loading")]
            if len(others) < self._settings.max_cli_sessions:
                return
            idle = [s for s in others if s.active_turns == 0 and s.status != "loading"]
            if not idle:
                return  # all busy: run over the bound rather than stop a reply
            await self._unload_slot(min(idle, key=lambda s: s.last_used))

    async def _drop_session(self, slot: ServingSlot) -> None:
        session, slot.session = slot.session, None
        if session is not None:
            await session.close()

    # -- unloading -------------------------------------------------------------------------

    async def unload(self, model_id: str) -> ModelEntry:
        """An adapter on a shared base leaves the base loaded; anything else ends its
        process (a shared base takes its adapters with it)."""
        entry = self.get(model_id)
        if entry.shared_adapter:
            if entry.adapter_task is not None and not entry.adapter_task.done():
                entry.adapter_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await entry.adapter_task
            entry.adapter_error = None
            session = entry.slot.session
            path = entry.spec.box_adapter_path
            if session is not None and session.alive and path:
                with contextlib.suppress(BoxError):
                    await session.unload_adapter(path)
            return entry
        await self._unload_slot(entry.slot)
        return entry

    async def _unload_slot(self, slot: ServingSlot) -> None:
        if slot.task is not None and not slot.task.done():
            slot.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slot.task
        if slot.session is not None and slot.session.alive:
            with contextlib.suppress(BoxError):
                await slot.session.unload()
        await self._drop_session(slot)
        slot.status, slot.error, slot.load_seconds = "unloaded", None, None
        slot.load_phases = {}
        for entry in self._entries.values():
            if entry.slot is slot:
                entry.adapter_error = None

    async def close(self) -> None:
        await asyncio.gather(*(self._unload_slot(slot) for slot in self._slots.values()),
                             return_exceptions=True)
