"""`lfgate doctor` on a terminal: the checks printed as they finish (slow ones say what they
wait for first), a summary line, exit status 0 only when nothing failed; or, with --json,
one object for scripts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TextIO

from lfgate.box.factory import open_box
from lfgate.config import SettingsError, load_settings
from lfgate.services.doctor import (
    DoctorContext,
    registry_smoke,
    report,
    run_doctor,
)
from lfgate.services.findings import Finding, Waiting
from lfgate.services.model_registry import ModelRegistry

MARKS = {"pass": "✓", "warn": "!", "fail": "✗", "skip": "-"}


def line(finding: Finding) -> str:
    took = f" ({finding.seconds:.2f} s)" if finding.seconds is not None else ""
    text = f"[{MARKS[finding.status]}] {finding.section}: {finding.name}: {finding.found}{took}"
    if finding.fix and finding.status in ("fail", "warn"):
        text += f"\n      fix: {finding.fix}"
    return text


async def doctor_from_env(*, env_path: Path, as_json: bool, out: TextIO) -> int:
    try:
        settings, error = load_settings(), None
    except SettingsError as exc:
        settings, error = None, str(exc)
    box = open_box(settings) if settings is not None else None
    registry = ModelRegistry(box, settings) if settings is not None and box is not None \
        else None
    context = DoctorContext(settings, error, env_path, box,
                            registry_smoke(registry) if registry is not None else None)
    findings: list[Finding] = []
    started = time.monotonic()
    try:
        async for item in run_doctor(context):
            if isinstance(item, Waiting):
                if not as_json:
                    print(f"    … {item.what}", file=out, flush=True)
                continue
            findings.append(item)
            if not as_json:
                print(line(item), file=out, flush=True)
    finally:
        if registry is not None:
            await registry.close()
        if box is not None:
            await box.close()
    result = report(findings, time.monotonic() - started)
    print(json.dumps(result) if as_json else result["line"], file=out)
    return 0 if result["ok"] else 1
