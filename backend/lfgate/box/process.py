"""A wrapper process running on the box, whatever carries it (an SSH channel or a local
subprocess): lines in, lines out, stderr drained into a ring, closed once; and, when its
output ends, why (the link to the box lost, or the wrapper killed or exited), so everyone
waiting on it is told what happened rather than a guess."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lfgate.box.errors import BoxError, WrapperExited
from lfgate.box.stderr_ring import StderrRing

EXIT_WAIT_S = 10.0  # after stdin closes, how long the wrapper may take to exit
# After its output ends, how long to wait for how the process ended (over SSH the exit
# status or signal follows the end of output) and for its last stderr lines.
END_NEWS_S = 3.0


@dataclass(frozen=True)
class ProcessEnd:
    """How a process on the box ended, as what carries it saw it."""

    lost: BoxError | None = None  # the link to the box went away: the process's fate unknown
    status: int | None = None  # its exit status
    signal: str | None = None  # or the signal that ended it, without SIG ("KILL")


def _exited_error(end: ProcessEnd, tail: str) -> WrapperExited:
    """The wrapper is gone: how, in the words a user can act on, with stderr's last lines."""
    hint = None
    if end.signal is not None:
        what = f"was killed by SIG{end.signal}"
        if end.signal == "KILL":
            hint = ("Something on the box killed it: SIGKILL is what the kernel's out-of-memory "
                    "killer sends (`dmesg | tail` on the box says whether it did). The next "
                    "request starts the wrapper again and loads the model anew.")
    elif end.status is not None:
        what = f"exited with status {end.status}"
    else:
        what = "exited"
    return WrapperExited(f"the wrapper on the box {what}" + (f":\n{tail}" if tail else ""),
                         hint=hint)


def _text(data: str | bytes) -> str:
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


class BoxProcess:
    """Duck-typed over asyncio's and asyncssh's streams, which share write/drain/readline."""

    def __init__(self, stdin: Any, stdout: Any, stderr: Any, *,
                 wait_exit: Callable[[], Awaitable[object]],
                 force_stop: Callable[[], Awaitable[None]],
                 ended: Callable[[], Awaitable[ProcessEnd]] | None = None) -> None:
        """`ended`: how the process ended, asked once its output has ended (the carrier
        knows: a lost SSH link, an exit signal or status)."""
        self._stdin = stdin
        self._stdout = stdout
        self._wait_exit = wait_exit
        self._force_stop = force_stop
        self._ended = ended
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

    async def ended_error(self) -> BoxError:
        """Why the output ended (after read_line gave None), for everyone who waited on it:
        the link to the box lost (a BoxUnreachable naming the box), or the wrapper gone
        (WrapperExited: killed by a signal, or its exit status, and stderr's last lines)."""
        end = ProcessEnd()
        if self._ended is not None:
            with contextlib.suppress(Exception):  # a carrier waits END_NEWS_S at most
                end = await asyncio.wait_for(self._ended(), 2 * END_NEWS_S)
        if end.lost is not None:
            return end.lost
        with contextlib.suppress(Exception):  # its last words, a traceback, come just before
            await asyncio.wait_for(asyncio.shield(self._stderr_task), END_NEWS_S)
        return _exited_error(end, self.stderr.tail())

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
