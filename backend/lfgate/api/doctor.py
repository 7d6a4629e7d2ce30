"""GET /api/doctor: the doctor's checks, as one JSON report or as SSE while they run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from lfgate.api.deps import FleetDep
from lfgate.api.sse import EVENT_STREAM, SSE_HEADERS, sse_event
from lfgate.services.boxes.doctor import report
from lfgate.services.boxes.findings import Finding, Waiting

router = APIRouter(prefix="/api/doctor", tags=["doctor"])


BoxQuery = Annotated[str | None, Query(max_length=40, description="a box's name (BOX_NAME "
                                      "or a BOXES section); none: the .env's box")]


@router.get("")
async def doctor(fleet: FleetDep, box: BoxQuery = None) -> dict[str, Any]:
    """Every check, then the report: {ok, summary, seconds, line, findings}."""
    runs = fleet.stack(box).doctor
    started, findings = time.monotonic(), []
    async with contextlib.aclosing(runs.run()) as items:
        findings = [item async for item in items if isinstance(item, Finding)]
    return report(findings, time.monotonic() - started)


@router.get("/stream", response_class=Response, responses=EVENT_STREAM)
async def doctor_stream(fleet: FleetDep, box: BoxQuery = None) -> StreamingResponse:
    """Events `waiting` (a slow part starts), `finding` (one check), then `report`."""
    runs = fleet.stack(box).doctor

    async def events() -> AsyncIterator[str]:
        started, findings = time.monotonic(), []
        async with contextlib.aclosing(runs.run()) as items:
            async for item in items:
                if isinstance(item, Waiting):
                    yield sse_event("waiting", item.as_dict())
                else:
                    findings.append(item)
                    yield sse_event("finding", item.as_dict())
        yield sse_event("report", report(findings, time.monotonic() - started))

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
