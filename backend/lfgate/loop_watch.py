"""LOOP_WATCH_MS: say so whenever one callback holds the event loop longer than that, and
whenever a task's exception was never read.

Why: everything the gateway serves shares one event loop, so one slow callback (a fit, a
parse, a synchronous read) holds every other request up. An outside probe found a leaderboard
that froze /api/health for 46 s; nothing in the tests had looked. With the watch on (every
gateway the tests start has it), each callback's CPU time on the loop's thread is measured;
CPU time, not wall time, so a machine busy with other work (two cores shared with a browser)
does not count against the gateway, while work done on the loop does. A callback over the
limit is logged with the coroutines it ran. A blocking call that sleeps on the loop is not
measured here: its wall time cannot be told from a wait for the GIL another thread holds (a
first try counted both and blamed a database read); ruff's flake8-async rules (ASYNC2xx:
time.sleep, open, blocking HTTP and subprocess calls in async functions) refuse those in the
source instead.

Task exceptions nobody retrieved are logged by asyncio itself ("... exception was never
retrieved"); the watch collects garbage at shutdown so those held in reference cycles are
reported too. tests/gateway_process.py fails a test whose gateway logged either.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("lfgate")
BLOCKED = "the event loop was blocked"  # the start of every report (tests look for it)


def _awaiting(coro: Any) -> list[tuple[str, bool]]:
    """The chain of coroutines a task is suspended in, outermost first, each with whether it
    is our code (not a library's): the one whose step did the work is among them."""
    chain = []
    while coro is not None and hasattr(coro, "cr_frame") and len(chain) < 60:
        code = getattr(coro, "cr_code", None)
        ours = code is not None and "site-packages" not in code.co_filename
        chain.append((getattr(coro, "__qualname__", repr(coro)), ours))
        coro = getattr(coro, "cr_await", None)
    return chain


def _what_ran(handle: asyncio.Handle) -> str:
    """The coroutines a Task step ran (the outermost, ours, the innermost), else the
    callback itself."""
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        chain = _awaiting(task.get_coro())
        shown = [name for i, (name, ours) in enumerate(chain)
                 if ours or i in (0, len(chain) - 1)]
        return f"task {task.get_name()!r} in {' > '.join(shown) or 'a finished coroutine'}"
    return f"callback {callback!r}"


class LoopWatch:
    """Installed on the running loop's thread for the gateway's life (lifespan state)."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.reports = 0
        self._thread = threading.get_ident()
        self._original: Callable[[asyncio.Handle], None] | None = None
        self._gc_s = 0.0  # thread CPU time spent collecting garbage, in all
        self._gc_started: float | None = None

    def install(self) -> None:
        original = asyncio.events.Handle._run
        self._original = original
        watch = self

        def _run(handle: asyncio.Handle) -> None:
            if threading.get_ident() != watch._thread:
                original(handle)
                return
            cpu, wall, collecting = time.thread_time(), time.monotonic(), watch._gc_s
            try:
                original(handle)
            finally:
                cpu = time.thread_time() - cpu
                if cpu > watch.limit_s and watch._original is not None:  # not uninstall's gc
                    watch._report(handle, cpu, time.monotonic() - wall,
                                  watch._gc_s - collecting)

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """Time in garbage collection on the loop's thread: said in a report, as a pause the
        collector made is the heap's doing more than the callback's."""
        if threading.get_ident() != self._thread:
            return
        if phase == "start":
            self._gc_started = time.thread_time()
        elif self._gc_started is not None:
            self._gc_s += time.thread_time() - self._gc_started
            self._gc_started = None

    def _report(self, handle: asyncio.Handle, cpu: float, wall: float, collecting: float
                ) -> None:
        self.reports += 1
        logger.warning("%s for %.0f ms of CPU (%.0f ms in all, %.0f ms of it collecting "
                       "garbage) by %s (LOOP_WATCH_MS=%.0f)", BLOCKED, cpu * 1000,
                       wall * 1000, collecting * 1000, _what_ran(handle),
                       self.limit_s * 1000)

    def uninstall(self) -> None:
        """Restore asyncio, and bring out task exceptions held only by reference cycles."""
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
            self._original = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        gc.collect()
