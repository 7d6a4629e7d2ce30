"""The box's stderr, kept in a bounded ring so it can be shown in errors and /api/health.

It must be read all the time: an SSH channel whose stderr is not drained stops at its window
(2 MiB), and the wrapper would then block on a log line.
"""

from __future__ import annotations

from collections import deque

from lfgate.remote import wrapper_protocol as wp

MAX_LINES = 200
MAX_LINE_CHARS = 2000


class StderrRing:
    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)

    def add(self, line: str) -> None:
        # Kept as text a store can keep: these lines reach error messages that are saved
        # with a reply (a NUL, a lone surrogate: U+FFFD), whatever the box printed.
        line = wp.as_text(line.rstrip("\r\n"))
        if line.strip():
            self._lines.append(line[:MAX_LINE_CHARS])

    def tail(self, lines: int = 12) -> str:
        return "\n".join(list(self._lines)[-lines:])
