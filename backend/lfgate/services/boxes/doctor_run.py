"""`lfgate doctor` on a terminal: the checks printed as they finish (slow ones say what they
wait for first), a summary line, exit status 0 only when nothing failed; or, with --json,
one object for scripts."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, TextIO, cast

from lfgate.box.factory import open_box
from lfgate.box_list import BoxDefinition, box_definitions
from lfgate.config import Settings, SettingsError, load_settings
from lfgate.services.boxes.doctor import (
    DoctorContext,
    registry_smoke,
    report,
    run_doctor,
)
from lfgate.services.boxes.findings import Finding, Waiting
from lfgate.services.models.registry import ModelRegistry

MARKS = {"pass": "✓", "warn": "!", "fail": "✗", "skip": "-"}


def line(finding: Finding) -> str:
    took = f" ({finding.seconds:.2f} s)" if finding.seconds is not None else ""
    text = f"[{MARKS[finding.status]}] {finding.section}: {finding.name}: {finding.found}{took}"
    if finding.fix and finding.status in ("fail", "warn"):
        text += f"\n      fix: {finding.fix}"
    return text


async def _one_box(settings: Settings | None, error: SettingsError | None, env_path: Path,
                   as_json: bool, out: TextIO, id_prefix: str = "") -> dict[str, Any]:
    box = open_box(settings) if settings is not None else None
    registry = ModelRegistry(box, settings, id_prefix) if settings is not None \
        and box is not None else None
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
    return report(findings, time.monotonic() - started)


class _InTurn:
    """One box's share of the terminal when several are checked at once: its lines go out
    live while every box before it has finished, and wait in order until then, so each box's
    report reads in one piece, in the BOXES file's order."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self._out = out
        self._live = live
        self._held: list[str] = []

    def write(self, text: str) -> int:
        if self._live:
            self._out.write(text)
        else:
            self._held.append(text)
        return len(text)

    def flush(self) -> None:
        if self._live:
            self._out.flush()

    def go_live(self) -> None:
        self._live = True
        self.write("".join(self._held))
        self._held.clear()
        self.flush()


async def _every_box(boxes: list[BoxDefinition], env_path: Path, as_json: bool,
                     out: TextIO) -> list[dict[str, Any]]:
    """Every box checked at once (a slow or unreachable box holds none of the others up; on
    real boxes most of the time is the network and each box's own model load)."""
    several = len(boxes) > 1
    shares = [_InTurn(out, live=index == 0) for index in range(len(boxes))]

    async def check(box: BoxDefinition, share: _InTurn) -> dict[str, Any]:
        terminal = cast(TextIO, share)
        if several and not as_json:
            print(f"== box {box.name} ({box.settings.host_label}) ==", file=terminal)
        result = {"box": box.name, **await _one_box(box.settings, None, env_path, as_json,
                                                    terminal, box.id_prefix)}
        if several and not as_json:
            print(f"box {box.name}: {result['line']}", file=terminal)
        return result

    tasks = [asyncio.create_task(check(box, share), name=f"doctor {box.name}")
             for box, share in zip(boxes, shares, strict=True)]
    results = []
    try:
        for index, task in enumerate(tasks):
            results.append(await task)
            if index + 1 < len(shares):
                shares[index + 1].go_live()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


async def doctor_from_env(*, env_path: Path, as_json: bool, out: TextIO,
                          box_name: str | None = None) -> int:
    """Every box (or the one named), each with its own checks and summary line."""
    try:
        settings, error = load_settings(env_file=env_path), None
        boxes = box_definitions(settings)
    except SettingsError as exc:
        settings, error, boxes = None, exc, []
    if box_name is not None:
        boxes = [b for b in boxes if b.name == box_name]
        if not boxes and error is None:
            print(f"lfgate doctor: no box is named {box_name!r}", file=out)
            return 2
    if not boxes:  # the configuration itself is wrong: its check says how
        results = [await _one_box(None, error, env_path, as_json, out)]
    else:
        results = await _every_box(boxes, env_path, as_json, out)
    ok = all(result["ok"] for result in results)
    if as_json:
        print(json.dumps(results[0] if len(results) == 1 else {"ok": ok, "boxes": results}),
              file=out)
    elif len(results) == 1:
        print(results[0]["line"], file=out)
    return 0 if ok else 1
