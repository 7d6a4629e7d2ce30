"""The doctor inside the gateway (GET /api/doctor): the same checks as `lfgate doctor`, over
the gateway's own box connection and model registry, so a model already loaded is not
loaded again for the smoke chat. One run at a time: a second asker waits for the first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from lfgate.box.box import Box
from lfgate.config import Settings
from lfgate.services.boxes.doctor import DoctorContext, registry_smoke, run_doctor
from lfgate.services.boxes.findings import Finding, Waiting
from lfgate.services.models.registry import ModelRegistry


class DoctorRuns:
    def __init__(self, settings: Settings, box: Box, registry: ModelRegistry,
                 env_path: Path) -> None:
        self._settings = settings
        self._box = box
        self._registry = registry
        self._env_path = env_path
        self._lock = asyncio.Lock()

    async def run(self) -> AsyncIterator[Finding | Waiting]:
        async with self._lock:
            context = DoctorContext(self._settings, None, self._env_path, self._box,
                                    registry_smoke(self._registry))
            async for item in run_doctor(context):
                yield item
