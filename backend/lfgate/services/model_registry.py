"""The models the gateway offers, each served by at most one wrapper session on the box.

Loading runs in the background (the HTTP call returns at once); a chat for a model that is
not loaded waits for the same load. A session whose wrapper died is reloaded on next use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from lfgate.box.box import Box
from lfgate.box.errors import BoxError
from lfgate.box.session import WrapperSession
from lfgate.config import Settings
from lfgate.services.errors import UnknownModel

ModelStatus = Literal["unloaded", "loading", "ready", "error"]


@dataclass(frozen=True)
class ModelSpec:
    id: str
    base_model_path: str
    adapter_path: str | None
    template: str
    finetuning_type: str
    infer_backend: str

    def for_wrapper(self, cli_path: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "base_model_path": self.base_model_path,
            "adapter_path": self.adapter_path,
            "template": self.template,
            "finetuning_type": self.finetuning_type,
            "infer_backend": self.infer_backend,
        }
        if cli_path:
            spec["cli_path"] = cli_path
        return spec


def specs_from_settings(settings: Settings) -> list[ModelSpec]:
    """`default` is the configured model; with an adapter, its base alone is `base`."""
    common = {"base_model_path": settings.base_model_path, "template": settings.template,
              "finetuning_type": settings.finetuning_type,
              "infer_backend": settings.infer_backend}
    specs = [ModelSpec(id="default", adapter_path=settings.adapter_path or None, **common)]
    if settings.adapter_path:
        specs.append(ModelSpec(id="base", adapter_path=None, **common))
    return specs


@dataclass
class ModelEntry:
    spec: ModelSpec
    status: ModelStatus = "unloaded"
    error: BoxError | None = None
    load_seconds: float | None = None
    load_phases: dict[str, float] = field(default_factory=dict)
    session: WrapperSession | None = None
    active_turns: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def refresh(self) -> None:
        """A ready model whose wrapper died is an error until it is loaded again."""
        if self.status == "ready" and self.session is not None and not self.session.alive:
            self.status = "error"
            self.error = BoxError(f"the wrapper exited: {self.session.stderr_tail}",
                                  code="wrapper_exited")


class ModelRegistry:
    def __init__(self, box: Box, settings: Settings) -> None:
        self._box = box
        self._settings = settings
        self._entries = {spec.id: ModelEntry(spec) for spec in specs_from_settings(settings)}

    def entries(self) -> list[ModelEntry]:
        for entry in self._entries.values():
            entry.refresh()
        return list(self._entries.values())

    def get(self, model_id: str) -> ModelEntry:
        entry = self._entries.get(model_id)
        if entry is None:
            known = ", ".join(self._entries)
            raise UnknownModel(f"unknown model {model_id!r}; known: {known}")
        entry.refresh()
        return entry

    def start_load(self, model_id: str, params: dict[str, Any] | None = None) -> ModelEntry:
        """Load in the background. `params` are those of the chat that asks: in CLI mode they
        become llamafactory-cli's start-up flags, so its first reply needs no restart. They
        are no defaults for later turns (each turn sends all of its own)."""
        entry = self.get(model_id)
        if entry.status in ("loading", "ready"):
            return entry
        entry.status, entry.error, entry.load_seconds = "loading", None, None
        entry.task = asyncio.create_task(self._load(entry, params or {}),
                                         name=f"load {model_id}")
        return entry

    async def ready_session(self, model_id: str, params: dict[str, Any]) -> WrapperSession:
        """The model's session, loading it first if needed; raises the load's BoxError."""
        entry = self.start_load(model_id, params)
        if entry.task is not None and not entry.task.done():
            await asyncio.shield(entry.task)
        if entry.status != "ready" or entry.session is None:
            raise entry.error or BoxError("the model is not loaded")
        return entry.session

    async def _load(self, entry: ModelEntry, params: dict[str, Any]) -> None:
        started = time.monotonic()
        await self._drop_session(entry)
        session = None
        entry.load_phases = phases = {}
        try:
            session = await self._box.start_wrapper(phases)
            spec = entry.spec.for_wrapper(self._settings.llamafactory_cli_path)
            load_started = time.monotonic()
            await session.load(spec, params, self._settings.chat_timeout)
            phases["load_s"] = round(time.monotonic() - load_started, 3)
        except BoxError as exc:
            if session is not None:
                await session.close()
            entry.status, entry.error = "error", exc
            return
        except asyncio.CancelledError:
            if session is not None:
                await asyncio.shield(session.close())
            entry.status = "unloaded"
            raise
        entry.session, entry.status = session, "ready"
        entry.load_seconds = round(time.monotonic() - started, 3)

    async def _drop_session(self, entry: ModelEntry) -> None:
        session, entry.session = entry.session, None
        if session is not None:
            await session.close()

    async def unload(self, model_id: str) -> ModelEntry:
        entry = self.get(model_id)
        if entry.task is not None and not entry.task.done():
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry.task
        if entry.session is not None and entry.session.alive:
            with contextlib.suppress(BoxError):
                await entry.session.unload()
        await self._drop_session(entry)
        entry.status, entry.error, entry.load_seconds = "unloaded", None, None
        return entry

    async def close(self) -> None:
        await asyncio.gather(*(self.unload(model_id) for model_id in self._entries),
                             return_exceptions=True)
