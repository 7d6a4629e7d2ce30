"""Ctrl-C at `lfgate chat`'s prompt is answered however it is timed (lfgate.commands.
prompt_interrupts). A full run's terminal test once typed Ctrl-C as "... " appeared and the
program sat at that prompt: Python's handler had taken the SIGINT before readline's select,
and that select looks at signals only when it is itself interrupted.

The program here reaches that state on purpose: a side thread sends itself the SIGINT while
the main thread waits at the prompt, so Python's C handler runs on the side thread and the
main thread's select is not interrupted."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.rig.terminal import Terminal

PROGRAM = r'''
import contextlib, os, signal, sys, threading
from lfgate.commands.prompt_interrupts import PromptInterrupts

def side():
    with open(sys.argv[2], "rb") as go:  # a FIFO: opened once the test writes to it
        go.read(1)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    os.write(1, b"SENT\n")

threading.Thread(target=side, daemon=True).start()
if sys.argv[1] == "guarded":
    guard = PromptInterrupts()
else:  # the plain way: a handler, and input()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    guard = contextlib.nullcontext()
with guard as prompt:
    try:
        line = (prompt.input if prompt else input)(">>> ")
        print("GOT", repr(line))
    except KeyboardInterrupt:
        print("INTERRUPTED")
'''


def start(tmp_path: Path, how: str) -> tuple[Terminal, Path]:
    pytest.importorskip("readline")
    script, go = tmp_path / "prompt.py", tmp_path / "go"
    script.write_text(PROGRAM)
    os.mkfifo(go)
    terminal = Terminal([sys.executable, str(script), how, str(go)],
                        env={**os.environ, "TERM": "xterm"}, cwd=tmp_path)
    return terminal, go


def send_the_sigint(terminal: Terminal, go: Path) -> None:
    terminal.expect(">>> ")
    with go.open("wb") as fifo:
        fifo.write(b"x")


def test_a_sigint_taken_outside_the_prompts_wait_still_interrupts_it(tmp_path):
    """No key typed. Its SENT may come after INTERRUPTED (the side thread writes it after
    the signal, and the answer can be quicker): neither is waited for before the other."""
    terminal, go = start(tmp_path, "guarded")
    try:
        send_the_sigint(terminal, go)
        terminal.expect("INTERRUPTED")
        assert terminal.wait() == 0
        assert "GOT" not in terminal.shown
    finally:
        terminal.close()


def test_the_control_without_the_guard_the_prompt_reads_on(tmp_path):
    """What the guard is for: without it, the same SIGINT leaves the prompt reading keys (the
    typed x is echoed there), and the KeyboardInterrupt comes only once Enter ends input().
    Should a later Python look at its signals here, this fails, and the guard can go."""
    terminal, go = start(tmp_path, "plain")
    try:
        send_the_sigint(terminal, go)
        terminal.expect("SENT\n")  # the main thread cannot answer before a key: it comes
        terminal.type("x")
        terminal.expect("x")
        terminal.type("\r")
        assert "GOT" not in terminal.expect("INTERRUPTED")
        assert terminal.wait() == 0
    finally:
        terminal.close()
