"""The doctor's quick checks at start-up (services/boxes/doctor.py, run_quick_checks): an
unreachable box, a login refused, a Python without LlamaFactory or a BASE_MODEL_PATH that is
not on the box is said in the terminal as the gateway starts, one line per failure with its
fix, rather than by the first message failing later. Run as a task once the gateway is up,
so a box that does not answer holds nothing back (its TCP timeout runs meanwhile)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from lfgate.services.boxes.doctor import DoctorContext, run_quick_checks
from lfgate.services.boxes.findings import Finding
from lfgate.services.boxes.fleet import BoxStack

logger = logging.getLogger("lfgate")


def failure_line(finding: Finding, box: str | None = None) -> str:
    """One failed check as the terminal shows it: the box (when there are several), where on
    the path, what was found, and the fix."""
    where = f"box {box}: " if box else ""
    fix = f"; fix: {finding.fix}" if finding.fix else ""
    return f"{where}{finding.section}: {finding.name}: {finding.found}{fix}"


async def check_box(stack: BoxStack, env_path: Path, named: bool) -> list[Finding]:
    """One box's quick checks over its own connection; each failure logged as it is found."""
    context = DoctorContext(stack.settings, None, env_path, stack.box)
    failed = []
    async for item in run_quick_checks(context):
        if isinstance(item, Finding) and item.status == "fail":
            failed.append(item)
            logger.warning(failure_line(item, stack.name if named else None))
    return failed


async def check_boxes(stacks: list[BoxStack], env_path: Path) -> None:
    """Every box at once (one slow box does not hold up what another says). A check that
    cannot run is a line in the log, never the end of the gateway."""
    named = len(stacks) > 1
    results = await asyncio.gather(*(check_box(stack, env_path, named) for stack in stacks),
                                   return_exceptions=True)
    for stack, result in zip(stacks, results, strict=True):
        if isinstance(result, Exception):
            logger.warning("the start-up check of box %s could not run: %s", stack.name,
                           result)
