"""The boxes the gateway serves (lfgate.box_list), each with the services bound to it: its
connection, its models, the scans of its training folders, its doctor and its status
readings. One box down leaves the others serving: nothing here waits on all of them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfgate.box.box import Box
from lfgate.box.errors import BoxError
from lfgate.box.factory import open_box
from lfgate.box_list import BoxDefinition
from lfgate.config import Settings
from lfgate.services.boxes.doctor_runs import DoctorRuns
from lfgate.services.boxes.monitor import BoxMonitor
from lfgate.services.errors import UnknownBox
from lfgate.services.models.discovery import Discovery
from lfgate.services.models.fleet_registry import FleetRegistry
from lfgate.services.models.registry import ModelEntry, ModelRegistry, ServingSlot


@dataclass
class BoxStack:
    """One box and what is bound to it."""

    definition: BoxDefinition
    box: Box
    registry: ModelRegistry
    discovery: Discovery
    doctor: DoctorRuns
    monitor: BoxMonitor

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def settings(self) -> Settings:
        return self.definition.settings

    async def watch(self) -> None:
        """Reach the box without holding the gateway back (errors show in health), then keep
        its listing and its status fresh."""
        with contextlib.suppress(BoxError):
            await self.box.connect()
        await asyncio.gather(self.discovery.run_periodically(),
                             self.monitor.run_periodically())

    def loaded(self) -> list[dict[str, Any]]:
        """What the box holds now: each base, adapter or model with its memory (the
        wrapper's own report: weight bytes, else the process's resident memory)."""
        entries = self.registry.entries()
        found: list[dict[str, Any]] = []
        for slot in self.registry.slots():
            held = slot.session.held if slot.session is not None else {}
            mine = [e for e in entries if e.slot is slot]
            main = next((e for e in mine if e.spec.adapter_path is None), None) if slot.shared \
                else (mine[0] if mine else None)
            found.append({"model_id": main.spec.id if main else None,
                          "kind": "base" if slot.shared else "model", "status": slot.status,
                          "memory_bytes": held.get("weight_bytes") or held.get("rss_bytes")})
            for adapter in held.get("adapters") or [] if slot.shared else []:
                entry = next((e for e in mine if e.spec.adapter_path == adapter.get("path")),
                             None)
                found.append({"model_id": entry.spec.id if entry else adapter.get("path"),
                              "kind": "adapter", "status": "ready",
                              "memory_bytes": adapter.get("bytes")})
        return found

    def wrapper(self) -> dict[str, Any] | None:
        """The version of a wrapper running on the box now (its hello), if one runs."""
        sessions = [s.session for s in self.registry.slots() if _alive(s)]
        if not sessions:
            return None
        hello = sessions[0].hello  # type: ignore[union-attr]
        return {"version": hello.get("wrapper"), "protocol": hello.get("protocol")}

    def warnings(self) -> list[str]:
        where = "" if self.definition.primary else f"box {self.name}: "
        return [f"{where}{w}" for w in self.discovery.warnings()]


def _bases_of(registry: ModelRegistry) -> Callable[[], list[str]]:
    """The folders a load would read the base weights from: the box's listed bases."""
    return lambda: sorted({e.slot.load_spec.base_model_path for e in registry.entries()})


def _alive(slot: ServingSlot) -> bool:
    return slot.session is not None and slot.session.alive


class BoxFleet:
    def __init__(self, stacks: list[BoxStack]) -> None:
        self.stacks = stacks
        self.registry = FleetRegistry([stack.registry for stack in stacks])
        self._watchers: list[asyncio.Task[None]] = []

    @classmethod
    def open(cls, definitions: list[BoxDefinition], env_path: Path) -> BoxFleet:
        stacks = []
        for definition in definitions:
            settings = definition.settings
            box = open_box(settings)
            registry = ModelRegistry(box, settings, definition.id_prefix)
            stacks.append(BoxStack(
                definition, box, registry, Discovery(box, registry, settings),
                DoctorRuns(settings, box, registry, env_path),
                BoxMonitor(box, settings.box_status_interval, _bases_of(registry))))
        return cls(stacks)

    @property
    def primary(self) -> BoxStack:
        return self.stacks[0]

    def fit_warning(self, entry: ModelEntry) -> str | None:
        """Why this model's load would not fit on its box's GPUs now, if it would not."""
        return self.stack(entry.spec.box).monitor.fit_warning(entry)

    def stack(self, name: str | None = None) -> BoxStack:
        """A box by name; None: the .env's own."""
        if name is None:
            return self.primary
        for stack in self.stacks:
            if stack.name == name:
                return stack
        raise UnknownBox(f"no box is named {name!r} (the boxes: "
                         f"{', '.join(s.name for s in self.stacks)})")

    def start(self) -> None:
        self._watchers = [asyncio.create_task(stack.watch(), name=f"watch box {stack.name}")
                          for stack in self.stacks]

    async def refresh(self) -> None:
        """Rescan every box's training folders now; a box that fails keeps its listing."""
        await asyncio.gather(*(stack.discovery.refresh() for stack in self.stacks))

    def warnings(self) -> list[str]:
        return [w for stack in self.stacks for w in stack.warnings()]

    async def stop_watching(self) -> None:
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for stack in self.stacks:
            await stack.discovery.close()

    async def close(self) -> None:
        """After the services that use the models: every wrapper ends, every link closes."""
        await self.registry.close()
        for stack in self.stacks:
            await stack.box.close()
