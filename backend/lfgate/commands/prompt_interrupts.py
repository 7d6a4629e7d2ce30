"""Ctrl-C at `lfgate chat`'s prompt is never lost.

Why: CPython's `input()` with GNU readline waits for a key in select() and looks at signals
only when that select is interrupted. A SIGINT that Python's C handler takes while the main
thread is not in that select (a person pressing Ctrl-C as the prompt is drawn, or the kernel
handing the signal to another thread) sets Python's flag, and nothing looks at the flag
again: the prompt sat there with the Ctrl-C unanswered until the next key. A full test run
saw it (the test's Ctrl-C at "... " did nothing, once in some runs, only under load).

So while the chat reads its input, a thread is told of every signal Python takes (the
`signal.set_wakeup_fd` byte) and, after a SIGINT, interrupts the main thread's wait with a
SIGUSR1 (whose handler does nothing) until Python's SIGINT handler has run: the interrupted
select then runs the pending handlers, Ctrl-C's KeyboardInterrupt among them.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

NUDGE = signal.SIGUSR1  # interrupts the main thread's wait; its own handler does nothing
NUDGE_EVERY_S = 0.05
NUDGE_FOR_S = 2.0  # at most, per SIGINT (the SIGINT may have been a reply's to take)


class PromptInterrupts:
    """A context (main thread only) whose `input` is the prompt: Ctrl-C there raises
    KeyboardInterrupt however it is timed, and whatever this process inherited (a script's
    background job starts it with SIGINT ignored, and Python then installs no handler of its
    own). A reply's own SIGINT handler (reply_stream) may stand in for this one meanwhile.
    Everything is put back at the end."""

    def __init__(self) -> None:
        self._pending = False  # a SIGINT came whose handler has not run yet
        self._at_prompt = False
        self._closed = False
        self._changed = threading.Condition()
        self._read_end = self._write_end = -1
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self._watcher: threading.Thread | None = None

    def input(self, prompt: str) -> str:
        self._at_prompt = True
        try:
            return input(prompt)
        finally:
            self._at_prompt = False

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        with self._changed:
            self._pending = False
            self._changed.notify_all()
        raise KeyboardInterrupt

    def _watch(self, main_thread: int) -> None:
        """For each SIGINT byte: nudge the main thread while it is at the prompt, until the
        handler has run (or NUDGE_FOR_S has passed, or the chat is over)."""
        while True:
            try:
                data = os.read(self._read_end, 512)
            except OSError:
                return
            if not data:  # the write end closed: the chat is over
                return
            if signal.SIGINT.value not in data:
                continue
            with self._changed:
                self._pending = True
                waited = 0.0
                while self._pending and not self._closed and waited < NUDGE_FOR_S:
                    if self._at_prompt:
                        signal.pthread_kill(main_thread, NUDGE)
                    self._changed.wait(NUDGE_EVERY_S)
                    waited += NUDGE_EVERY_S
                self._pending = False

    def __enter__(self) -> PromptInterrupts:
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)  # set_wakeup_fd's condition
        self._previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, NUDGE)}
        signal.signal(NUDGE, lambda signum, frame: None)
        signal.signal(signal.SIGINT, self._on_sigint)
        self._previous_wakeup = signal.set_wakeup_fd(self._write_end,
                                                     warn_on_full_buffer=False)
        self._watcher = threading.Thread(target=self._watch, name="prompt interrupts",
                                         args=(threading.get_ident(),), daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """The watcher stops before the handlers go back: a nudge after that would meet
        SIGUSR1's default action, which ends the process."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self._write_end)  # the watcher reads the end and returns
        if self._watcher is not None:
            self._watcher.join()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        os.close(self._read_end)
