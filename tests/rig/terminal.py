"""A program on a terminal of its own, for tests: what a command sees when a person types
at it (a pty: readline is on, Ctrl-C is the terminal's SIGINT to the program, Ctrl-D its end
of input), and what it shows there."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time
from pathlib import Path

ENTER, CTRL_C, CTRL_D = "\r", "\x03", "\x04"
ROWS, COLUMNS = 50, 200  # wide: readline wraps a long line with escape sequences
WAIT_S = 120.0  # how long `expect` waits for what must come before calling it a failure


class Terminal:
    """`argv` on a new pty, in `cwd`, with exactly `env`. `expect` waits for a piece of text
    in what it shows (after what was already expected); `type` types."""

    __test__ = False

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path,
                 sigint_ignored: bool = False) -> None:
        """`sigint_ignored`: start it as a script's background job would, SIGINT ignored."""
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal and stdin/out/err
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN if sigint_ignored else signal.SIG_DFL)
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.shown = ""  # everything the program wrote, \r dropped
        self._seen = 0  # how far `expect` has read
        self.status: int | None = None

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def _read(self, until: float) -> bool:
        """Take in what the program wrote; False once it has closed the terminal."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, until - time.monotonic()))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the program has exited and the terminal is closed
            return False
        self.shown += data.decode(errors="replace").replace("\r", "")
        return bool(data)

    def expect(self, text: str) -> str:
        """What the program showed up to and including `text`, once it has shown it."""
        deadline = time.monotonic() + WAIT_S
        while (at := self.shown.find(text, self._seen)) < 0:
            if time.monotonic() > deadline or not self._read(deadline):
                raise AssertionError(f"never showed {text!r}; it showed:\n"
                                     f"{self.shown[self._seen:][-3000:]}")
        before, self._seen = self.shown[self._seen:at + len(text)], at + len(text)
        return before

    def wait(self) -> int:
        """Its exit status, once it has exited (reading what it still shows meanwhile)."""
        deadline = time.monotonic() + WAIT_S
        while self.status is None:
            pid, code = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(code)
            elif time.monotonic() > deadline:
                raise AssertionError(f"did not exit; it showed:\n{self.shown[-3000:]}")
            else:
                self._read(min(deadline, time.monotonic() + 0.5))
        return self.status

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -signal.SIGKILL
        os.close(self.fd)
