"""What each box is doing, read every BOX_STATUS_INTERVAL seconds over its open connection
(no new handshake): reachable or not and why, the round trip, its GPUs as nvidia-smi sees them
(a box that is training shows them busy) and its load. A box that is down is tried again at
the same pace, so the page sees it come back without anybody asking."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from lfgate.box.box import Box
from lfgate.box.errors import BoxError
from lfgate.box.wrapper_files import STATUS
from lfgate.services.models.registry import ModelEntry

logger = logging.getLogger("lfgate")
STATUS_TIMEOUT_S = 20.0  # box_status.py gives nvidia-smi 10 s
FIT_OVERHEAD = 1.2  # weights plus the activations and KV cache of a chat, roughly
BUSY_PCT = 50  # a GPU this busy is somebody's job (training, most likely)
BoxState = Literal["connected", "reconnecting", "down"]


@dataclass(frozen=True)
class BoxReading:
    """The last status read; `checked_at` None: never read yet."""

    rtt_ms: float | None = None
    checked_at: float | None = None
    gpus: list[dict[str, Any]] = field(default_factory=list)
    gpu_error: str | None = None
    load_avg: list[float] | None = None
    error: str | None = None  # the status program failed on a box that is reachable
    weights: dict[str, int | None] = field(default_factory=dict)  # model folder -> bytes


class BoxMonitor:
    """`folders` names the model folders whose weights each reading measures (the bases of
    the box's listing), for the warning before a load that will not fit."""

    def __init__(self, box: Box, interval_s: float,
                 folders: Callable[[], list[str]] = list) -> None:
        self._box = box
        self._interval_s = interval_s
        self._folders = folders
        self._reconnecting = False
        self._reached = False
        self.reading = BoxReading()
        self.reads = 0  # status reads that reached the box (tests wait on it)

    @property
    def state(self) -> BoxState:
        if self._box.connected:
            self._reached = True
            return "connected"
        return "reconnecting" if self._reconnecting else "down"

    @property
    def reached(self) -> bool:
        """Whether the box has been connected since the gateway started (seen by a reading or
        a look at its state): one that never was is not "back" when it connects, and its
        models did not "go away" with it."""
        return self.state == "connected" or self._reached

    async def read_once(self) -> None:
        """Reconnect if the link is down, then read the status. A failed connect is the box's
        `last_error` (/api/health shows it); a failed read is the reading's."""
        if not self._box.connected:
            self._reconnecting = True
            try:
                await self._box.connect()
            except BoxError:
                return
            finally:
                self._reconnecting = False
        self._reached = True
        try:
            rtt_s = await self._box.round_trip_s()
            facts = await self._box.run_program(STATUS, {"weights": self._folders()},
                                                STATUS_TIMEOUT_S)
        except BoxError as exc:
            self.reading = BoxReading(checked_at=time.time(), error=exc.message)
            return
        self.reads += 1
        self.reading = BoxReading(
            rtt_ms=round(rtt_s * 1000, 1), checked_at=time.time(),
            gpus=[g for g in facts.get("gpus") or [] if isinstance(g, dict)],
            gpu_error=facts.get("error"), load_avg=facts.get("load_avg"),
            weights=facts.get("weights") or {})

    async def run_periodically(self) -> None:
        if not self._interval_s:
            return
        while True:
            try:
                await self.read_once()
            except Exception:  # a reading this code cannot take must not end the readings
                logger.exception("reading the box's status failed")
            # Python 3.11's wait_for can return a result that came as the task was cancelled
            # (the stop at shutdown), dropping the cancel: stop anyway, or shutdown hangs.
            if asyncio.current_task().cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(self._interval_s)

    def fit_warning(self, entry: ModelEntry) -> str | None:
        """Why loading this model would not fit, judged on the last reading: its weights
        (the base's, if the base is not loaded yet, plus the adapter's) with room for a chat
        against the memory free on all the GPUs together (LlamaFactory spreads a model over
        the GPUs it sees). None: it fits, it is loaded, or nothing tells."""
        gpus = [g for g in self.reading.gpus if g.get("memory_total_mib") is not None
                and g.get("memory_used_mib") is not None]
        if not gpus or entry.status in ("ready", "loading"):
            return None
        need = 0
        if entry.slot.status not in ("ready", "loading"):
            base = self.reading.weights.get(entry.slot.load_spec.base_model_path)
            if base is None:
                return None
            need += base
        facts = entry.spec.facts
        if entry.spec.adapter_path and facts is not None and facts.size_bytes:
            need += facts.size_bytes
        need_mib = need * FIT_OVERHEAD / 2**20
        free = [g["memory_total_mib"] - g["memory_used_mib"] for g in gpus]
        if need_mib <= sum(free):
            return None
        busy = [f"GPU {g['index']} {g['utilization_pct']}% busy" for g in gpus
                if (g.get("utilization_pct") or 0) >= BUSY_PCT]
        return (f"will not fit: it needs about {need_mib / 1024:.1f} GiB of GPU memory and "
                f"the GPUs have {sum(free) / 1024:.1f} GiB free"
                + (f" ({', '.join(busy)}: training?)" if busy else "")
                + "; unload a model or wait for the GPUs to free up")
