"""A program on a terminal of its own, for tests: what a command sees when a person types
at it (a pty: readline is on, Ctrl-C is the terminal's SIGINT to the program, Ctrl-D its end
of input), and what it shows there."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ENTER, CTRL_C, CTRL_D = "\r", "\x03", "\x04"
ROWS, COLUMNS = 50, 200  # wide: readline wraps a long line with escape sequences
WAIT_S = 120.0  # how long `expect` waits for what must come before calling it a failure
EXITED_DRAIN_S = 2.0  # after the program's exit: the most its last output takes to arrive


class Terminal:
    """`argv` on a new pty, in `cwd`, with exactly `env`. `expect` waits for a piece of text
    in what it shows (after what was already expected); `type` types."""

    __test__ = False

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path,
                 sigint_ignored: bool = False) -> None:
        """`sigint_ignored`: start it as a script's background job would, SIGINT ignored.

        Started by subprocess (fork and exec in C), never by pty.fork(): a test process has
        threads (pytest-xdist's, the browser's event loop), and Python code run in a child
        forked from a threaded process can deadlock on a lock another thread held at the fork
        (once, a full run's terminal showed nothing for two minutes). `setsid --ctty` makes
        the pty the program's controlling terminal, as pty.fork() did: Ctrl-C is its SIGINT."""
        fd, child_end = pty.openpty()
        fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        # SIGINT ignored is inherited across exec; the shell sets it, then becomes the program.
        wrapper = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"] if sigint_ignored else []
        try:
            process = subprocess.Popen(["setsid", "--ctty", *wrapper, *argv], stdin=child_end,
                                       stdout=child_end, stderr=child_end, cwd=cwd, env=env,
                                       close_fds=True)
        except BaseException:
            os.close(child_end)
            raise
        # The program's end of the pty stays open here too until `close`: once the last
        # holder closes it, reading ours fails (EIO) and output the kernel had not passed on
        # yet is lost (a loaded machine lost a chat's last line, written just before exit).
        self._child_end = child_end
        self._process = process
        self.pid, self.fd = process.pid, fd
        self.shown = ""  # everything the program wrote, \r dropped
        self._seen = 0  # how far `expect` has read
        self.status: int | None = None

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def _read(self, until: float) -> bool:
        """Take in what the program wrote; False once it has exited and everything it wrote
        is in (what it wrote last reaches this end of the pty a moment after its exit)."""
        if self._process.poll() is not None:
            until = min(until, time.monotonic() + EXITED_DRAIN_S)
            ready, _, _ = select.select([self.fd], [], [], max(0.0, until - time.monotonic()))
            if not ready:
                return False
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
                                     f"{self.shown[self._seen:][-3000:]}\n{self._where()}")
        before, self._seen = self.shown[self._seen:at + len(text)], at + len(text)
        return before

    def _where(self) -> str:
        """For a failure: whether the program still runs, and if so where each of its
        threads is (py-spy, where installed), and where its output goes: a program that
        went silent says why."""
        code = self._process.poll()
        if code is not None:
            return f"--- it exited with status {code}"
        return f"{self._wiring()}\n{self._stacks()}\n{self._resumed()}"

    def _resumed(self) -> str:
        """Whether its output was held by the terminal (flow control: output stopped, as
        after a ^S): resume it and say what then arrives within a second."""
        try:
            termios.tcflow(self._child_end, termios.TCOON)
        except OSError as exc:
            return f"--- output resumed: {exc}"
        before = len(self.shown)
        self._read(time.monotonic() + 1.0)
        came = self.shown[before:]
        said = (f"--- after resuming its output (TCOON), it showed: {came[-500:]!r}" if came
                else "--- resuming its output (TCOON) brought nothing")
        return f"{said}\n{self._same_pty()}"

    def _same_pty(self) -> str:
        """Whether the program's stdout is this very pty (the same device and inode on the
        same devpts mount, not only the same name), and whether bytes written to its end
        here reach this end: the pty pair itself works, or it does not."""
        facts = []
        for label, path in (("its fd 1", f"/proc/{self.pid}/fdinfo/1"),
                            ("this process's slave", f"/proc/self/fdinfo/{self._child_end}")):
            try:
                info = dict(line.split(":\t", 1) for line in
                            Path(path).read_text().splitlines() if ":\t" in line)
                stat = os.stat(f"/proc/{self.pid}/fd/1") if label == "its fd 1" \
                    else os.fstat(self._child_end)
                facts.append(f"{label}: mnt_id {info.get('mnt_id')}, device {stat.st_rdev}, "
                             f"inode {stat.st_ino}")
            except OSError as exc:
                facts.append(f"{label}: {exc}")
        before = len(self.shown)
        try:
            os.write(self._child_end, b"[written to the slave here]")
        except OSError as exc:
            facts.append(f"writing to the slave: {exc}")
        self._read(time.monotonic() + 1.0)
        facts.append(f"then this end read: {self.shown[before:][-200:]!r}")
        return "--- the pty itself: " + "; ".join(facts)

    def _wiring(self) -> str:
        """The terminal as the program and this end see it: which pty each of its first
        three fds is, which pty this end is, the bytes waiting on this end, its state (T:
        stopped). Twice a program sat at its prompt with nothing shown here."""
        facts = []
        for fd in (0, 1, 2):
            try:
                facts.append(f"fd {fd} -> {os.readlink(f'/proc/{self.pid}/fd/{fd}')}")
            except OSError as exc:
                facts.append(f"fd {fd}: {exc}")
        try:
            waiting = struct.unpack("I", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0" * 4))[0]
            facts.append(f"this end's pty: {os.ttyname(self._child_end)}, {waiting} bytes "
                         "waiting")
        except OSError as exc:
            facts.append(f"this end: {exc}")
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            facts.append(f"state {state}")
        except OSError as exc:
            facts.append(f"state: {exc}")
        return "--- its terminal: " + "; ".join(facts) + "\n" + self._holders()

    def _holders(self) -> str:
        """Whether this end is still the pty's master, which processes hold that master
        (pid, fd, command) and what this process's threads are doing: output that never
        arrived here was read by whoever else reads it."""
        lines = []
        try:
            index = os.ttyname(self._child_end).rsplit("/", 1)[1]
            mine = os.readlink(f"/proc/self/fd/{self.fd}")
            info = Path(f"/proc/self/fdinfo/{self.fd}").read_text()
            tag = "tty-index:\t" + index + "\n"
            lines.append(f"this end: fd {self.fd} -> {mine}, "
                         + (f"the master of pts {index}" if tag in info else f"NOT it: {info}"))
        except OSError as exc:
            return f"--- holders: {exc}"
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                for fd in (proc / "fd").iterdir():
                    if os.readlink(fd) == "/dev/ptmx" and tag in (
                            proc / "fdinfo" / fd.name).read_text():
                        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                        lines.append(f"master held by pid {proc.name} fd {fd.name}: "
                                     f"{command.decode(errors='replace')[:200]}")
            except OSError:
                continue
        for thread_id, frame in sys._current_frames().items():
            where = []
            while frame is not None and len(where) < 4:
                where.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} "
                             f"{frame.f_code.co_name}")
                frame = frame.f_back
            lines.append(f"thread {thread_id}: " + " < ".join(where))
        return ("--- who holds its master, and this process's threads:\n" + "\n".join(lines)
                + "\n" + self._syscalls())

    def _syscalls(self) -> str:
        """What each thread of this process is doing in the kernel (its syscall and first
        argument: read(fd) on this end's fd would be a second reader here), and how much the
        program has written in all (/proc/PID/io: its header lines reached write() or not).
        A program at its prompt with nothing new shown: its write count says whether it wrote
        more than this end read (it had not: its Ctrl-C had gone unanswered)."""
        lines = []
        for task in sorted(Path("/proc/self/task").iterdir(), key=lambda t: int(t.name)):
            try:
                call = (task / "syscall").read_text().split()
                comm = (task / "comm").read_text().strip()
            except OSError as exc:
                lines.append(f"task {task.name}: {exc}")
                continue
            if call and call[0].isdigit():  # number, then the arguments in hex
                number, first = int(call[0]), int(call[1], 16) if len(call) > 1 else None
                lines.append(f"task {task.name} ({comm}): syscall {number}, first argument "
                             f"{first}" + (" = this end's fd" if first == self.fd else ""))
            else:
                lines.append(f"task {task.name} ({comm}): {' '.join(call)}")
        try:
            io = Path(f"/proc/{self.pid}/io").read_text().replace("\n", "; ")
            lines.append(f"the program's I/O counts: {io}")
        except OSError as exc:
            lines.append(f"the program's I/O counts: {exc}")
        return "--- this process's threads in the kernel (0 read, 7 poll, 23 select, " \
            "232 epoll_wait, 270 pselect6, 271 ppoll on x86_64):\n" + "\n".join(lines)

    def _stacks(self) -> str:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        try:
            dump = subprocess.run([spy, "dump", "--pid", str(self.pid)], capture_output=True,
                                  text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"--- it still runs (no stack: {exc})"
        return f"--- it still runs; its stacks:\n{(dump.stdout + dump.stderr)[-4000:]}"

    def wait(self) -> int:
        """Its exit status, once it has exited (reading what it still shows meanwhile)."""
        deadline = time.monotonic() + WAIT_S
        while self.status is None:
            code = self._process.poll()
            if code is not None:
                self.status = code
            elif time.monotonic() > deadline:
                raise AssertionError(f"did not exit; it showed:\n{self.shown[-3000:]}")
            else:
                self._read(min(deadline, time.monotonic() + 0.5))
        return self.status

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()
            self.status = -signal.SIGKILL
        os.close(self.fd)
        os.close(self._child_end)
