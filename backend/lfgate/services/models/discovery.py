"""Finds the runs and checkpoints on the box and hands the listing to the registry.

One scan is one call of discover_adapters.py over the box's connection. Scans coalesce: a
refresh asked for while one runs gets that one's result. A failed scan keeps the last
listing and says why, so a box that drops for a minute does not empty the picker. What the
scan says enters the gateway here, through build_catalog: every string of the listing is
text (a folder name that is not UTF-8 included), its exact paths kept for the wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from lfgate.box.box import Box
from lfgate.box.errors import BoxError
from lfgate.box.wrapper_files import DISCOVER
from lfgate.config import Settings
from lfgate.services.models.catalog import build_catalog, readable
from lfgate.services.models.registry import ModelRegistry

logger = logging.getLogger("lfgate")
SCAN_TIME_BUDGET_S = 10.0  # on the box; the program stops walking and says `truncated`
SCAN_TIMEOUT_S = 60.0  # the whole call, connection included


def scan_job(settings: Settings) -> dict[str, Any]:
    """discover_adapters.py's job for these settings (the doctor scans with it too)."""
    adapter = settings.adapter_path
    return {"dirs": settings.adapter_dir_list,
            "paths": [adapter] if adapter and "," not in adapter else [],
            "base_model_path": settings.base_model_path, "time_budget_s": SCAN_TIME_BUDGET_S}


@dataclass
class ScanReport:
    dirs: list[str] = field(default_factory=list)
    scanned_at: float | None = None  # epoch seconds of the last successful scan
    elapsed_s: float | None = None  # that scan, end to end
    error: str | None = None  # the last scan failed: why (the listing is the one before)
    scans: int = 0


class Discovery:
    def __init__(self, box: Box, registry: ModelRegistry, settings: Settings) -> None:
        self._box = box
        self._registry = registry
        self._settings = settings
        self.report = ScanReport(dirs=settings.adapter_dir_list)
        self._scan: asyncio.Task[None] | None = None

    @property
    def wanted(self) -> bool:
        """Nothing to scan without ADAPTER_DIRS or an ADAPTER_PATH to describe."""
        return bool(self._settings.adapter_dir_list or self._settings.adapter_path)

    async def refresh(self) -> ScanReport:
        """Rescan now (or join the scan under way); the registry gets the new listing."""
        if not self.wanted:
            return self.report
        if self._scan is None or self._scan.done():
            self._scan = asyncio.create_task(self._run_scan(), name="scan adapters")
        await asyncio.shield(self._scan)
        return self.report

    async def _run_scan(self) -> None:
        started = time.monotonic()
        try:
            result = await self._box.run_program(DISCOVER, scan_job(self._settings),
                                                  SCAN_TIMEOUT_S)
        except BoxError as exc:
            self.report.error = readable(exc.message)  # the box's words may echo a path
            return
        # The scan's paths are exact (a name that is not UTF-8 is no text); the catalog shows
        # them as text and keeps them exact for the wrapper alone (catalog's docstring).
        self._registry.replace_catalog(build_catalog(self._settings, result))
        self.report.error = None
        self.report.scanned_at = time.time()
        self.report.elapsed_s = round(time.monotonic() - started, 3)
        self.report.scans += 1

    def warnings(self) -> list[str]:
        """What the last scan could not do, said where configuration warnings are."""
        catalog = self._registry.catalog
        found = [f"ADAPTER_DIRS: {m.get('dir')}: {m.get('reason')}" for m in catalog.missing]
        if self.report.error:
            found.append(f"scanning ADAPTER_DIRS failed: {self.report.error}")
        if catalog.truncated:
            found.append(f"scanning ADAPTER_DIRS stopped early ({SCAN_TIME_BUDGET_S:.0f} s or "
                         "5,000 adapters): point ADAPTER_DIRS at the runs you want")
        return found

    async def run_periodically(self) -> None:
        """At start-up, then every RESCAN_INTERVAL seconds (0: at start-up only)."""
        while True:
            try:
                await self.refresh()
            except Exception:  # a scan this code cannot read must not end the rescans
                logger.exception("scanning ADAPTER_DIRS failed")
            if self.report.error:
                logger.warning("scanning ADAPTER_DIRS failed: %s", self.report.error)
            # Python 3.11's wait_for (inside a scan) can drop a cancel that came as its
            # result did (the stop at shutdown): stop anyway, or shutdown waits forever.
            task = asyncio.current_task()
            if not self._settings.rescan_interval or (task is not None and task.cancelling()):
                return
            await asyncio.sleep(self._settings.rescan_interval)

    async def close(self) -> None:
        if self._scan is not None and not self._scan.done():
            self._scan.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scan
