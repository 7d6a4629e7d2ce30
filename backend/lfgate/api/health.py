"""GET /api/health: the gateway is up, and how each box is (read every few seconds by the
box monitors, so this answers at once, whatever the boxes do); `status` sums the boxes up."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from lfgate.api.deps import FleetDep, SettingsDep
from lfgate.api.schemas import (
    BoxErrorOut,
    BoxHealthOut,
    GpuOut,
    HealthOut,
    LoadedOut,
    RemoteOut,
    WrapperOut,
)
from lfgate.services.boxes.fleet import BoxStack

router = APIRouter(prefix="/api", tags=["health"])


def _box(stack: BoxStack) -> BoxHealthOut:
    reading, error, wrapper = stack.monitor.reading, stack.box.last_error, stack.wrapper()
    return BoxHealthOut(
        name=stack.name, host=stack.settings.host_label, mode=stack.settings.chat_mode,
        primary=stack.definition.primary, state=stack.monitor.state,
        reached=stack.monitor.reached,
        error=None if error is None else BoxErrorOut(**error.as_dict()),
        rtt_ms=reading.rtt_ms, checked_at=reading.checked_at, status_error=reading.error,
        gpus=[GpuOut(**gpu) for gpu in reading.gpus], gpu_error=reading.gpu_error,
        load_avg=reading.load_avg, loaded=[LoadedOut(**item) for item in stack.loaded()],
        wrapper=None if wrapper is None else WrapperOut(**wrapper),
        warnings=stack.warnings())


def overall(boxes: list[BoxHealthOut]) -> Literal["ok", "degraded", "down"]:
    """The gateway as a whole: "ok" only while every box is connected (a box never reached,
    reconnecting or down is not ok), "down" when none is: the gateway answers, but no model
    can."""
    connected = [box.state == "connected" for box in boxes]
    return "ok" if all(connected) else "degraded" if any(connected) else "down"


@router.get("/health")
async def health(settings: SettingsDep, fleet: FleetDep) -> HealthOut:
    status = fleet.primary.box.status()
    extra = [w for stack in fleet.stacks[1:] for w in stack.settings.warnings]
    boxes = [_box(stack) for stack in fleet.stacks]
    return HealthOut(status=overall(boxes), mode=settings.chat_mode,
                     remote=RemoteOut(connected=status.connected, host=status.host,
                                      error=status.error),
                     warnings=settings.warnings + extra + fleet.warnings(),
                     boxes=boxes,
                     auth=bool(settings.gateway_token.get_secret_value()))
