"""`lfgate doctor` with several boxes checks them at once, yet prints each box's report in
one piece, in the BOXES file's order (fast: the checks themselves are stand-ins here; the
real boxes are in test_boxes_gateway.py)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

import pytest

from lfgate.services.boxes import doctor_run


def box(name: str) -> Any:
    return SimpleNamespace(name=name, id_prefix=f"{name}/",
                           settings=SimpleNamespace(host_label=f"{name}.example:22"))


def test_boxes_are_checked_at_once_and_reported_in_order(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    started: list[str] = []
    b_done = asyncio.Event()

    async def one_box(settings: Any, error: Any, env_path: Path, as_json: bool, out: TextIO,
                      id_prefix: str = "") -> dict[str, Any]:
        name = id_prefix.rstrip("/")
        started.append(name)
        print(f"[✓] {name}: first", file=out, flush=True)
        if name == "a":  # box a waits until b has finished: they run at once
            await asyncio.wait_for(b_done.wait(), 5)
        else:
            b_done.set()
        print(f"[✓] {name}: second", file=out, flush=True)
        return {"ok": name != "b", "line": f"{name} done"}

    async def run() -> list[dict[str, Any]]:
        monkeypatch.setattr(doctor_run, "_one_box", one_box)
        return await doctor_run._every_box([box("a"), box("b")], Path(".env"), False, out)

    out = io.StringIO()
    results = asyncio.run(run())
    assert started == ["a", "b"]
    assert [r["box"] for r in results] == ["a", "b"] and [r["ok"] for r in results] == [
        True, False]
    assert out.getvalue().splitlines() == [
        "== box a (a.example:22) ==", "[✓] a: first", "[✓] a: second", "box a: a done",
        "== box b (b.example:22) ==", "[✓] b: first", "[✓] b: second", "box b: b done",
    ]


def test_a_box_whose_check_breaks_stops_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception in one box's checks is the command's error, and no other box's check is
    left running behind it."""
    cancelled: list[str] = []

    async def one_box(settings: Any, error: Any, env_path: Path, as_json: bool, out: TextIO,
                      id_prefix: str = "") -> dict[str, Any]:
        name = id_prefix.rstrip("/")
        if name == "a":
            await asyncio.sleep(0)
            raise RuntimeError("broken check")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return {}

    async def run() -> None:
        monkeypatch.setattr(doctor_run, "_one_box", one_box)
        await doctor_run._every_box([box("a"), box("b")], Path(".env"), True, io.StringIO())

    with pytest.raises(RuntimeError, match="broken check"):
        asyncio.run(run())
    assert cancelled == ["b"]
