"""The gateway's own port: bound by `lfgate serve` before it says anything (so "open http://…"
is never printed for a port it cannot have), and, when that fails, who holds it, as far as
can be told cheaply: an LF Gate (its GET /api/health answers), else the listening process
(Linux: /proc). The doctor's port check asks the same questions."""

from __future__ import annotations

import errno
import json
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PROBE_TIMEOUT_S = 2.0  # an LF Gate answers /api/health at once, whatever its boxes do
_LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp


class CannotListen(Exception):
    """The gateway cannot listen where it is told to: one line saying why and what to do."""


@dataclass(frozen=True)
class PortHolder:
    """Who listens on a port: `lfgate` True when it answers as an LF Gate."""

    lfgate: bool
    description: str  # "an LF Gate (http://127.0.0.1:8000/)", "pid 4242 (nginx)", ...


def how_to_move(port: int) -> str:
    return (f"choose another port: GATEWAY_PORT={port + 1} in .env, or "
            f"`lfgate serve --port {port + 1}`")


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening, for uvicorn to serve on; CannotListen
    naming the holder when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":  # as uvicorn binds: a port in TIME_WAIT is free to take
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)  # a browser that comes at once waits in the backlog
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            holder = port_holder(host, port)
            then = "open that one, stop it" if holder.lfgate else "stop it"
            raise CannotListen(f"port {port} on {host} is taken by {holder.description}: "
                               f"{then}, or {how_to_move(port)}") from None
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}: check "
                           "GATEWAY_HOST (an address of this machine, or --host), or "
                           f"{how_to_move(port)}") from None
    return sock


def port_is_free(host: str, port: int) -> bool:
    """Whether `lfgate serve` could bind host:port now (bound and let go at once)."""
    try:
        listen_socket(host, port).close()
    except CannotListen:
        return False
    return True


def port_holder(host: str, port: int) -> PortHolder:
    """Who listens on the port: an LF Gate if /api/health says so, else the process found in
    /proc (its pid and name), else nothing known. Blocking: call it from a thread."""
    url = f"http://{_reachable(host)}:{port}/"
    if _is_lfgate(url):
        return PortHolder(True, f"an LF Gate already running there ({url})")
    pid = _listening_pid(port)
    if pid is None:
        return PortHolder(False, "another program")
    name = _process_name(pid)
    return PortHolder(False, f"pid {pid}" + (f" ({name})" if name else ""))


def _reachable(host: str) -> str:
    """The address to ask: a wildcard listen address is reached on loopback."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _is_lfgate(url: str) -> bool:
    """An LF Gate's /api/health: its JSON with `boxes`, or (GATEWAY_TOKEN set) its 401 in our
    error shape."""
    request = urllib.request.Request(f"{url}api/health", headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            body = json.loads(response.read(65536))
            return isinstance(body, dict) and "boxes" in body and "mode" in body
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read(4096)).get("detail")
        except (ValueError, AttributeError, OSError):
            return False
        return exc.code == 401 and isinstance(detail, dict) and detail.get("code") == "unauthorized"
    except (OSError, ValueError):
        return False


def _listening_pid(port: int) -> int | None:
    """The process with a socket listening on the port (any address), from /proc: Linux only,
    and only processes this user may look into; None otherwise."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN_STATE \
                    and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:  # gone, or not ours to look into
            continue
    return None


def _process_name(pid: int) -> str:
    """The process's name (comm), not its command line, which may hold secrets."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
