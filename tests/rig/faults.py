"""Helpers for the fault tests (tests/test_faults_*.py): a reply read until a fault is injected
into it, processes of the box found under their own sshd, and an outcome made fit for
docs/reliability.md (the box's address, ports and folders of one run taken out)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.gateway_process import GatewayProcess

# Greedy, and a prompt the tiny model answers for well over 1,000 tokens without stopping
# (tests/test_gateway_e2e.py), paced by the spy: a fault injected after the first chunks
# always lands mid-reply.
LONG = {"temperature": 0, "max_new_tokens": 4000}
LONG_PROMPT = "Tell me a very long story"
SHORT = {"temperature": 0, "max_new_tokens": 16}


def until(read: Callable[[], Any], check: Callable[[Any], bool], timeout_s: float = 60,
          what: str = "the state") -> Any:
    """Poll `read` until `check` holds on what it returned; fail with the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{what} never came within {timeout_s} s: {value}"
        time.sleep(0.1)


@dataclass
class CutReply:
    """A reply streamed until a fault was injected, then read to its end."""

    meta: dict[str, Any] = field(default_factory=dict)
    before: list[str] = field(default_factory=list)  # deltas that came before the fault
    after: list[str] = field(default_factory=list)  # deltas in flight when it struck
    end: str = ""  # "error" or "done"
    data: dict[str, Any] = field(default_factory=dict)  # the end event's
    infos: list[dict[str, Any]] = field(default_factory=list)
    fault_at: float = 0.0
    ended_at: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.before + self.after)

    @property
    def seconds(self) -> float:
        """From the fault to the end of the stream."""
        return self.ended_at - self.fault_at


def cut_reply(gateway: GatewayProcess, fault: Callable[[], object], *, after_deltas: int = 2,
              body: dict[str, Any] | None = None) -> CutReply:
    """Stream a long reply; after `after_deltas` chunks, `fault()`; read on to the end."""
    cut = CutReply()
    body = body or {"message": LONG_PROMPT, "params": LONG}
    for name, data, at in gateway.stream(body):
        if name == "meta":
            cut.meta = data
        elif name == "info":
            cut.infos.append(data)
        elif name == "delta":
            (cut.after if cut.fault_at else cut.before).append(data["text"])
            if not cut.fault_at and len(cut.before) >= after_deltas:
                fault()
                cut.fault_at = time.monotonic()
        elif name in ("done", "error"):
            cut.end, cut.data, cut.ended_at = name, data, at
    assert cut.fault_at, f"the reply ended before the fault: {cut.end} {cut.data}"
    assert cut.end, "the stream ended without done or error"
    return cut


def stored_reply(gateway: GatewayProcess, cut: CutReply) -> dict[str, Any]:
    """The reply message as the gateway stored it."""
    chat = gateway.http.get(f"/api/chats/{cut.meta['chat_id']}").json()
    return next(m for m in chat["messages"] if m["id"] == cut.meta["turn_id"])


def answer(gateway: GatewayProcess, body: dict[str, Any] | None = None
           ) -> tuple[dict[str, Any], list[tuple[str, dict]]]:
    """A short turn that must be answered (the recovery after a fault)."""
    done, events = gateway.chat(body or {"message": "Are you back?", "params": SHORT})
    assert events[-1][0] == "done", events[-1]
    assert done["finish_reason"] in ("stop", "length") and done["content"], done
    return done, events


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def box_processes(server_pid: int, *words: str) -> list[int]:
    """Processes under the test sshd `server_pid` (the box's, never another test session's)
    whose command line holds every one of `words`."""
    tree, found = _children(), []
    todo = list(tree.get(server_pid, []))
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        line = cmdline(pid)
        if line and all(word in line for word in words):
            found.append(pid)
    return sorted(found)


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def stable(text: str, server: Any, *paths: str) -> str:
    """`text` without what changes from run to run: the box's address and port, the user,
    the test's folders (so docs/reliability.md does not change when nothing else did)."""
    text = text.replace(f"{server.user}@{server.address}:{server.port}", "the box")
    for path in sorted(paths, key=len, reverse=True):
        text = text.replace(path, "<" + Path(path).name + ">")
    return text.replace(f"{server.address}:{server.port}", "the box").replace(
        server.address, "the box")
