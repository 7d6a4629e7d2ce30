"""How `lfgate serve` runs uvicorn: on the socket it bound before saying anything
(lfgate.services.listen_port), with a terminal that stays readable, and a stop that is a clean exit.

- The terminal: the gateway's own lines are `lfgate: …` (the "lfgate" logger); uvicorn's
  start-up chatter (server process, application startup, "Uvicorn running on") is left out at
  the default level, as `lfgate serve` says the URL itself; and the access log keeps the lines
  worth reading: a failure (4xx, 5xx), an OpenAI call (/v1) and anything that changes
  something (not GET or HEAD) under /api. A page load (30 static files) and the page's
  polling (/api/health, /api/models) write nothing. `--log-level debug` shows it all.
- The stop: SIGINT (Ctrl-C) or SIGTERM lets uvicorn shut down gracefully (replies saved, the
  box's wrappers ended), then the process exits 0, so `make run` ends without
  "make: *** [run] Terminated". uvicorn re-raises the signal it stopped for once it is done;
  the handlers here take that re-raise as the end.
- The connections: MAX_CONNECTIONS (fitted to ulimit -n), HEADER_TIMEOUT_S, a close instead of
  reading a body nobody will use, and accept() out of file descriptors said once a minute, not
  thousands of times a second (lfgate.connection_limits; the body's own timeout and size are
  lfgate.api.guards.body_limit's).
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from lfgate.connection_limits import (
    AcceptErrors,
    CalmListener,
    ConnectionLimits,
    OncePerMinute,
    open_file_limit,
)

READ_METHODS = frozenset({"GET", "HEAD"})


FAILURE_LINES = 100  # 4xx access lines written per FAILURE_WINDOW_S at most
FAILURE_WINDOW_S = 10.0


class AccessLines(logging.Filter):
    """uvicorn's access records worth a line (its args: client, method, path, HTTP version,
    status). A client's failures (4xx) are each worth a line, up to FAILURE_LINES in
    FAILURE_WINDOW_S: a scanner or a client in a loop sending thousands of refused requests
    a second would otherwise fill the disk with the same line; the next line written says
    how many were left out. Server failures (5xx) are always written."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._window_end = float("-inf")
        self._written = 0
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) != 5:
            return True  # not an access record as we know it: keep it
        _, method, path, _, status = args
        if not isinstance(status, int) or status >= 500:
            return True
        if status >= 400:
            return self._failure_line(record)
        path = str(path)
        if path == "/v1" or path.startswith(("/v1/", "/v1?")):
            return True
        return path.startswith("/api/") and str(method) not in READ_METHODS

    def _failure_line(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        if now >= self._window_end:
            self._window_end, self._written = now + FAILURE_WINDOW_S, 0
        if self._written >= FAILURE_LINES:
            self._left_out += 1
            return False
        self._written += 1
        if self._left_out:
            record.msg = f"{record.msg} (and {self._left_out} more 4xx answers not logged)"
            self._left_out = 0
        return True


class _Stopped(Exception):
    """The signal uvicorn re-raises after its graceful shutdown: the end of a clean stop."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


def quiet_logs(log_level: str) -> None:
    """After uvicorn.Config has set up its loggers: `lfgate: …` lines for our logger, none of
    uvicorn's start-up chatter at the default level, access lines only where worth reading."""
    ours = logging.getLogger("lfgate")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("lfgate: %(message)s"))
    ours.addHandler(handler)
    ours.setLevel(log_level.upper())
    ours.propagate = False
    if log_level == "debug":
        return
    logging.getLogger("uvicorn.access").addFilter(AccessLines())
    uvicorn_lines = logging.getLogger("uvicorn.error")
    uvicorn_lines.setLevel(max(uvicorn_lines.level, logging.WARNING))


def serve(app: Any, sock: socket.socket, host: str, port: int, log_level: str,
          trusted_proxies: str = "", limits: ConnectionLimits | None = None) -> int:
    """Serve `app` on the bound `sock` until SIGINT or SIGTERM; the exit status (0: stopped
    cleanly; 1: the application did not start, uvicorn has said why).

    X-Forwarded-For and X-Forwarded-Proto are believed only from `trusted_proxies`
    (TRUSTED_PROXIES): uvicorn's default trusts them from 127.0.0.1, and an `ssh -L` tunnel,
    or any program on this machine, is 127.0.0.1, so a header could pick the client address
    the login limit counts by.

    `limits`: MAX_CONNECTIONS and HEADER_TIMEOUT_S (default: what create_app put on
    app.state.connection_limits)."""
    if limits is None:
        limits = (getattr(getattr(app, "state", None), "connection_limits", None)
                  or ConnectionLimits())
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=1,
                            proxy_headers=bool(trusted_proxies.strip()),
                            forwarded_allow_ips=trusted_proxies.strip() or None)
    quiet_logs(log_level)
    open_files = open_file_limit()
    limits = limits.fitted(open_files)  # said once, as an `lfgate:` line, when lowered
    config.http = limits.protocol()  # read when the server starts (config.load)
    floods = [(logging.getLogger("asyncio"), AcceptErrors(limits, open_files)),
              (logging.getLogger("uvicorn.error"), OncePerMinute())]
    for source, flood in floods:
        source.addFilter(flood)
    sock = CalmListener.around(sock)
    server = uvicorn.Server(config)
    before = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except _Stopped:
        pass
    except SystemExit:  # uvicorn's own exit when the application's start-up failed
        return 1
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for source, flood in floods:
            source.removeFilter(flood)
        sock.close()
    return 0 if server.started else 1
