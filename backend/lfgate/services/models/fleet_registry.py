"""Every box's models as one registry. An id names its box (`a100:qwen--lora--sft`; the
.env's own box has no prefix, lfgate.box_list), so each call goes to that box's
ModelRegistry and the services above (turns, compare, prompt sets, /v1) need not know
there is more than one box."""

from __future__ import annotations

import asyncio
from typing import Any

from lfgate.box.errors import BoxError
from lfgate.box_list import ID_SEPARATOR
from lfgate.config import Settings
from lfgate.services.errors import UnknownModel
from lfgate.services.models.catalog import ModelSpec
from lfgate.services.models.registry import ModelEntry, ModelRegistry, Served, ServingSlot


class FleetRegistry:
    def __init__(self, registries: list[ModelRegistry]) -> None:
        self.registries = registries

    def of(self, model_id: str) -> ModelRegistry:
        """The registry of the box the id names."""
        for registry in self.registries:
            if registry.owns(model_id):
                return registry
        box = model_id.split(ID_SEPARATOR, 1)[0]
        names = ", ".join(r.settings.box_name for r in self.registries)
        raise UnknownModel(f"unknown model {model_id!r}: no box is named {box!r} "
                           f"(the boxes: {names})")

    def settings_for(self, model_id: str) -> Settings:
        return self.of(model_id).settings

    def shares_base(self, spec: ModelSpec) -> bool:
        return self.of(spec.id).shares_base(spec)

    def entries(self) -> list[ModelEntry]:
        return [entry for registry in self.registries for entry in registry.entries()]

    def slots(self) -> list[ServingSlot]:
        return [slot for registry in self.registries for slot in registry.slots()]

    def get(self, model_id: str) -> ModelEntry:
        return self.of(model_id).get(model_id)

    def usable(self, model_id: str) -> ModelEntry:
        return self.of(model_id).usable(model_id)

    def start_load(self, model_id: str, params: dict[str, Any] | None = None, *,
                   again: bool = False) -> ModelEntry:
        return self.of(model_id).start_load(model_id, params, again=again)

    def refuse(self, model_id: str, error: BoxError) -> None:
        self.of(model_id).refuse(model_id, error)

    async def ready_session(self, model_id: str, params: dict[str, Any]) -> Served:
        return await self.of(model_id).ready_session(model_id, params)

    async def unload(self, model_id: str) -> ModelEntry:
        return await self.of(model_id).unload(model_id)

    async def close(self) -> None:
        await asyncio.gather(*(registry.close() for registry in self.registries),
                             return_exceptions=True)
