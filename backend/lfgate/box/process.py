"""A wrapper process running on the box, whatever carries it (an SSH channel or a local
subprocess): lines in, lines out, stderr drained into a ring, closed once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from lfgate.box.errors import WrapperExited
from lfgate.box.stderr_ring import StderrRing

EXIT_WAIT_S = 10.0  # after stdin closes, how long the wrapper may take to exit


def _text(data: str | bytes) -> str:
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


class BoxProcess:
    """Duck-typed over asyncio's and asyncssh's streams, which share write/drain/readline."""

    def __init__(self, stdin: Any, stdout: Any, stderr: Any, *,
                 wait_exit: Callable[[], Awaitable[object]],
                 force_stop: Callable[[], Awaitable[None]]) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._wait_exit = wait_exit
        self._force_stop = force_stop
        self.stderr = StderrRing()
        self._stderr_task = asyncio.create_task(self._drain(stderr))
        self._closed = False

    async def _drain(self, stream: Any) -> None:
        with contextlib.suppress(Exception):
            while line := await stream.readline():
                self.stderr.add(_text(line))

    async def send_line(self, line: str) -> None:
        try:
            self._stdin.write(line.encode() if isinstance(self._stdin, asyncio.StreamWriter)
                              else line)
            await self._stdin.drain()
        except Exception as exc:  # a broken pipe, socket or asyncssh channel
            raise WrapperExited(f"the wrapper is gone: {exc}\n{self.stderr.tail()}") from exc

    async def read_line(self) -> str | None:
        """The next stdout line, or None once the wrapper has closed its stdout."""
        try:
            line = await self._stdout.readline()
        except Exception:  # a broken pipe, socket or asyncssh channel: the same as EOF
            return None
        return _text(line) or None

    async def end_input(self) -> None:
        """Close stdin: the program has its whole job (a wrapper takes it as the end)."""
        with contextlib.suppress(Exception):
            if hasattr(self._stdin, "write_eof") and self._stdin.can_write_eof():
                self._stdin.write_eof()
            else:
                self._stdin.close()

    async def close(self) -> None:
        """Close stdin (the wrapper exits on EOF), wait a little, then stop it by force."""
        if self._closed:
            return
        self._closed = True
        await self.end_input()
        try:
            await asyncio.wait_for(self._wait_exit(), EXIT_WAIT_S)
        except (TimeoutError, Exception):
            with contextlib.suppress(Exception):
                await self._force_stop()
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(self._stderr_task, 2)
