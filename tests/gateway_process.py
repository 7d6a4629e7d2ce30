"""Run the real `lfgate serve` as a subprocess for a test, and read its SSE streams."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from lfgate.loop_watch import BLOCKED
from tests.rig.ports import free_port

LFGATE = str(Path(sys.executable).parent / "lfgate")
STOPPED = "lfgate: stopped: every reply saved"  # what a gateway says once it shut down cleanly
# Every gateway a test starts watches its own event loop (lfgate.loop_watch): a callback that
# holds it over 100 ms of CPU, or a task exception nobody read, fails the test at stop().
WATCH = {"LOOP_WATCH_MS": "100"}
GUARDED = (BLOCKED, "exception was never retrieved")


class GatewayProcess:
    __test__ = False

    def __init__(self, env: dict[str, str], workdir: Path, dotenv: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        """`env` goes in the environment (on top of this process's, which tests/rig/hermetic.py
        has cleared of the user's settings); `dotenv` is written to workdir/.env, as users do.
        `port`: a fixed one, to restart a stopped gateway where a browser expects it."""
        if port is not None:
            _require_free(port)  # else the health check could reach the old gateway
        self.port = port or free_port()
        if dotenv is not None:
            (workdir / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
        self.log = _new_log(workdir, self.port)
        self.proc = subprocess.Popen(
            [LFGATE, "serve", "--port", str(self.port)], cwd=workdir,
            env={**os.environ, **WATCH, **env}, stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        # With GATEWAY_TOKEN, every /api and /v1 call needs it: `http` sends it as Bearer.
        self.token = {**(dotenv or {}), **env}.get("GATEWAY_TOKEN") or None
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(300, connect=5),
                                 headers=auth)
        self._wait_up()

    def _wait_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lfgate exited: {self.log.read_text()[-3000:]}")
            try:
                if self.http.get("/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.proc.kill()  # no test holds it yet, so nobody else would stop it
        self.proc.wait()
        raise RuntimeError(f"lfgate did not start: {self.log.read_text()[-3000:]}")

    def stream(self, body: dict[str, Any], path: str = "/api/chat"
               ) -> Iterator[tuple[str, dict[str, Any], float]]:
        """POST a turn and yield (event, data, arrival time) as events arrive."""
        with self.http.stream("POST", path, json=body) as response:
            assert response.status_code == 200, response.read()
            yield from sse_events(response)

    def chat(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, dict]]]:
        """A whole streamed turn: its final event's data and every event before it."""
        return self.chat_at("/api/chat", body)

    def chat_at(self, path: str, body: dict[str, Any]
                ) -> tuple[dict[str, Any], list[tuple[str, dict]]]:
        events = [(name, data) for name, data, _ in self.stream(body, path)]
        return events[-1][1], events

    def scanned_models(self, timeout: float = 120) -> dict[str, dict[str, Any]]:
        """GET /api/models once every box's first scan of ADAPTER_DIRS has ended (the listing
        before it has no discovered model: the scan runs in the background from start-up,
        beside the start-up checks), as {id: model}."""
        deadline = time.monotonic() + timeout
        while True:
            listing = self.http.get("/api/models").json()
            scans = listing.get("scans") or []
            if all(s["scanned_at"] is not None or s["error"] for s in scans if s["dirs"]):
                return {m["id"]: m for m in listing["models"]}
            if time.monotonic() > deadline:
                raise AssertionError(f"the first scan never ended: {scans}")
            time.sleep(0.1)

    def wait_status(self, model: str, want: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.http.get(f"/api/models/{model}/status").json()
            if status["status"] in (want, "error") or time.monotonic() > deadline:
                return status
            time.sleep(0.2)

    def stop(self) -> bool:
        """SIGTERM, as a service manager would; True when the gateway shut down cleanly.
        Raises AssertionError when it blocked its event loop or left a task exception unread
        (the guards every test's gateway runs with: WATCH)."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.assert_guards_held()
                return False
        self.assert_guards_held()
        # The lifespan's last line (lfgate.app), and exit status 0 (lfgate.serving).
        return self.proc.returncode == 0 and STOPPED in self.log.read_text()

    def assert_guards_held(self) -> None:
        text = self.log.read_text(errors="replace")
        found = [line for line in text.splitlines() if any(g in line for g in GUARDED)]
        assert not found, (f"the gateway's guards fired ({self.log}):\n" + "\n".join(found)
                           + "\n" + _context(text, found[0]))


def _require_free(port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RuntimeError(f"port {port} is still in use: stop the old gateway first"
                               ) from exc


def _new_log(workdir: Path, port: int) -> Path:
    """A log of this run only (a restart on the same port gets the next name), so `stop`
    judges this run's shutdown."""
    log, run = workdir / f"gateway-{port}.log", 1
    while log.exists():
        run += 1
        log = workdir / f"gateway-{port}-{run}.log"
    return log


def sse_raw(response: httpx.Response) -> Iterator[tuple[str, str, float]]:
    """(event name, raw data, arrival time) per Server-Sent Event, comments skipped: raw, so
    it also reads /v1's `data: [DONE]`."""
    name, data = "message", []
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if data:
                yield name, "\n".join(data), time.monotonic()
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any], float]]:
    for name, data, at in sse_raw(response):
        yield name, json.loads(data), at


def sse_with_ids(response: httpx.Response) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
    """(event id or None, event name, data) per Server-Sent Event: what a client that
    reattaches needs (its Last-Event-ID is the last id it saw)."""
    event_id, name, data = None, "message", []
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if data:
                yield event_id, name, json.loads("\n".join(data))
            event_id, name, data = None, "message", []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def _context(text: str, line: str, around: int = 30) -> str:
    """The log lines after the first guard line (a traceback follows an unread exception)."""
    lines = text.splitlines()
    at = lines.index(line)
    return "\n".join(lines[at:at + around])
