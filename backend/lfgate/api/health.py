from __future__ import annotations

from fastapi import APIRouter

from lfgate.api.deps import BoxDep, DiscoveryDep, SettingsDep
from lfgate.api.schemas import HealthOut, RemoteOut

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
async def health(settings: SettingsDep, box: BoxDep, discovery: DiscoveryDep) -> HealthOut:
    status = box.status()
    return HealthOut(mode=settings.chat_mode,
                     remote=RemoteOut(connected=status.connected, host=status.host,
                                      error=status.error),
                     warnings=settings.warnings + discovery.warnings())
