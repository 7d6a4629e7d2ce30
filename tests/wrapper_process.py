"""Drive a wrapper in --serve mode from a test: JSON lines in, events out, with timeouts."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WRAPPERS = {"cli": ROOT / "remote" / "chat_cli_wrapper.py",
            "script": ROOT / "remote" / "chat_inference.py"}
SPY_DIR = ROOT / "tests" / "rig" / "spy"


def child_pids(pid: int) -> list[int]:
    """Direct children of a process, read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class WrapperProcess:
    """One wrapper process on the local box, with a spy file recording what the model got."""

    def __init__(self, python: str, mode: str, spy: Path, env: dict[str, str] | None = None):
        self.spy = spy
        self.mode = mode
        run_env = {**os.environ, "LFGATE_TEST_SPY": str(spy), "PYTHONPATH": str(SPY_DIR),
                   **(env or {})}
        self.proc = subprocess.Popen(
            [python, str(WRAPPERS[mode]), "--serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=run_env,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.hello = self.next(timeout=60)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))  # any non-JSON line fails the test here
        self.events.put(None)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def send(self, command: dict[str, Any] | str) -> None:
        assert self.proc.stdin is not None
        line = command if isinstance(command, str) else json.dumps(command)
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 120) -> dict[str, Any]:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            tail = "".join(self.stderr[-40:])
            raise AssertionError(f"no event in {timeout} s; stderr:\n{tail}") from None
        if event is None:
            raise AssertionError(f"wrapper exited; stderr:\n{''.join(self.stderr[-40:])}")
        return event

    def until(self, *names: str, timeout: float = 120) -> tuple[dict[str, Any], list[dict]]:
        """Events up to the first one named in `names`; returns it and everything before."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(timeout=max(0.1, deadline - time.monotonic()))
            if event["event"] in names:
                return event, seen
            seen.append(event)

    def settle(self, timeout: float = 60) -> WrapperProcess:
        """Read and drop every event sent so far (up to the pong of a ping of its own): a
        wrapper that tests share hands the next one no event an earlier one left unread."""
        mark = f"settle-{time.monotonic_ns()}"
        self.send({"op": "ping", "id": mark})
        deadline = time.monotonic() + timeout
        while True:
            pong, _ = self.until("pong", timeout=max(0.1, deadline - time.monotonic()))
            if pong.get("id") == mark:
                return self

    def load(self, model: dict[str, Any], params: dict | None = None) -> dict[str, Any]:
        self.send({"op": "load", "model": model, "params": params or {}, "timeout_s": 300})
        event, _ = self.until("ready", "error", timeout=320)
        return event

    def chat(self, turn_id: str, messages: list[dict], params: dict | None = None,
             **fields: Any) -> tuple[dict[str, Any], list[dict]]:
        """One chat; `fields` go in the command as they are (tools, adapter, template)."""
        self.send({"op": "chat", "id": turn_id, "messages": messages, "params": params or {},
                   **fields})
        return self.until("done", "error")

    def spied(self) -> list[dict[str, Any]]:
        if not self.spy.exists():
            return []
        records = [json.loads(line) for line in self.spy.read_text().splitlines()]
        return [record for record in records if not record.get("end")]

    def generate_calls(self) -> list[dict[str, Any]]:
        """Every `generate` call the model saw, with its batch size (`rows`)."""
        path = self.spy.with_name(self.spy.name + ".generate.jsonl")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def close(self, timeout: float = 30) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
