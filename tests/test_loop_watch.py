"""The guards every gateway under test runs with (issue 24, findings 1 and 6): a callback that
holds the event loop over LOOP_WATCH_MS, or a task exception nobody read, is logged, and
tests/gateway_process.py fails the test. In-process for the measure itself; then planted in a
real `lfgate serve` (tests/rig/plant/sitecustomize.py) to show the rig fails on each."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from lfgate.loop_watch import BLOCKED, LoopWatch
from tests.ui_rig import start_scripted_gateway

PLANT_DIR = Path(__file__).parent / "rig" / "plant"


def run_watched(coroutine_function) -> None:
    async def main() -> None:
        watch = LoopWatch(0.1)
        watch.install()
        try:  # a task of its own: the step that installed the watch is not measured
            await asyncio.create_task(coroutine_function())
        finally:
            watch.uninstall()

    asyncio.run(main())


def blocked_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(BLOCKED)]


def test_cpu_on_the_loop_over_the_limit_is_reported_with_its_coroutine(caplog):
    async def fit_on_the_loop() -> None:
        until = time.thread_time() + 0.2
        while time.thread_time() < until:
            pass

    async def short_work() -> None:
        until = time.thread_time() + 0.02
        while time.thread_time() < until:
            pass
        await asyncio.sleep(0.2)  # waiting is not blocking

    async def both() -> None:
        await asyncio.gather(asyncio.create_task(fit_on_the_loop(), name="fit"),
                             asyncio.create_task(short_work(), name="short"))

    with caplog.at_level(logging.WARNING, logger="lfgate"):
        run_watched(both)
    lines = blocked_lines(caplog)
    assert len(lines) == 1, lines
    assert "ms of CPU" in lines[0] and "task 'fit' in" in lines[0]
    assert "fit_on_the_loop" in lines[0]


def test_work_in_a_thread_is_not_the_loops(caplog):
    def compute() -> None:
        until = time.thread_time() + 0.3
        while time.thread_time() < until:
            pass

    async def offloaded() -> None:
        await asyncio.to_thread(compute)

    with caplog.at_level(logging.WARNING, logger="lfgate"):
        run_watched(offloaded)
    assert blocked_lines(caplog) == []


@pytest.mark.parametrize(("plant", "said"), [
    ("block", "ms of CPU"),
    ("unread", "exception was never retrieved"),
])
def test_a_real_gateway_with_a_planted_regression_fails_its_test(tmp_path, plant, said,
                                                                 reliability):
    gateway = start_scripted_gateway(tmp_path / "gw", env={
        "PYTHONPATH": str(PLANT_DIR), "LFGATE_TEST_PLANT": plant})
    try:
        assert gateway.http.get("/api/leaderboard").status_code == 200
    finally:
        with pytest.raises(AssertionError, match="the gateway's guards fired") as failed:
            gateway.stop()
    assert said in str(failed.value)
    if plant != "unread":
        assert "_planted_board" in str(failed.value)
    reliability.record(
        "gateway", {"block": "A route computing 300 ms on the event loop (planted)",
                    "unread": "A task whose exception nobody reads (planted)"}[plant],
        f"the gateway logs it (“{said}”{', with the coroutines it ran' * (plant == 'block')})"
        " and the test that started it fails: every gateway under test runs with "
        "LOOP_WATCH_MS=100")


def test_the_same_gateway_without_the_plant_passes(tmp_path):
    gateway = start_scripted_gateway(tmp_path / "gw", env={"PYTHONPATH": str(PLANT_DIR)})
    assert gateway.http.get("/api/leaderboard").status_code == 200
    assert gateway.stop()


@pytest.mark.parametrize("built_first", [True, False], ids=["create_app", "control"])
async def test_no_request_builds_a_route(tmp_path, monkeypatch, built_first):
    """FastAPI builds a router's routes (dependencies, pydantic adapters) at the first request
    that reaches it: 25-70 ms of CPU in one step of the loop per router, which a loaded
    machine took over 100 ms at a page's first model load. create_app builds them all before
    serving, so no request does (the control, without that, shows requests did)."""
    import fastapi.routing

    from lfgate import app as app_module
    from tests.test_models_api import Client, gateway

    if not built_first:
        monkeypatch.setattr(app_module, "_build_routes_now", lambda app: None)
    app = gateway(tmp_path, monkeypatch)
    built: list[str] = []
    real = fastapi.routing.get_dependant

    def counted(*args, **kwargs):
        built.append(getattr(kwargs.get("call"), "__name__", "?"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "get_dependant", counted)
    async with Client(app) as http:
        # A path no route takes walks every router; the others are one router's each.
        for path in ("/api/no-such-path", "/api/health", "/api/models", "/v1/models",
                     "/api/chats", "/api/prompt-sets"):
            await http.get(path)
    assert (built == []) is built_first, built
