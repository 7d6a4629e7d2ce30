"""How many connections the gateway holds and how long a client may take to ask: what keeps
one client, or many, from holding every socket of an exposed gateway (issue 24 finding 4).

uvicorn (0.55, h11) has none of it: a connection that never completes its request headers is
kept forever (its keep-alive timer starts only after a first response), and its
`limit_concurrency` counts connections only once a request's headers are in, then answers
503 with a warning line per request. So `lfgate serve` runs uvicorn with:

- `GuardedH11` as its HTTP protocol (uvicorn's `http=` takes a class):
  - MAX_CONNECTIONS: a connection beyond it is answered at once with a `503` naming the
    setting, then closed; one `lfgate:` line a minute says how many were refused.
  - HEADER_TIMEOUT_S: a new connection, and a kept-alive one after each response, must have
    sent a whole request head within it, however slowly it trickles in; else `408` (when part
    of a request came) or a plain close (when nothing did: a browser's spare connection).
  - A response given before the request's body was read (`401` at the token gate, `413` or
    `408` of the body limit, lfgate.api.guards.body_limit) closes the connection instead of
    reading the rest of the body: the answer, then FIN; what the client still sends is read
    and dropped for at most LINGER_S, so the answer is not lost to a reset (nginx's
    lingering close).
- `CalmListener`, the listening socket: when accept() fails for want of file descriptors
  (EMFILE, ENFILE), asyncio logs it with a traceback and schedules a retry, then goes on
  with the rest of its accept loop, failing, logging and scheduling again for every round of
  it, up to the listen backlog (CPython gh-151615; tens of thousands of tracebacks within
  seconds of a burst under a small `ulimit -n`); this socket says "nothing to accept" for the
  rest of that round, so it is one attempt a second, and `AcceptErrors` turns asyncio's
  line into one `lfgate:` line a minute.
- `connection_budget`: MAX_CONNECTIONS lowered to fit the open-file limit (ulimit -n),
  leaving room for everything else the gateway opens (database, SSH, wrappers, logs).
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("lfgate")

LOG_EVERY_S = 60.0  # one line per kind of trouble per minute at most, with a count
LINGER_S = 2.0  # after an answer that closes: how long the rest of a request is read and dropped
MAX_LINGERING = 32  # closes lingering at once; beyond, the answer is written and closed at once
# File descriptors left to the rest of the gateway (database, SSH, wrappers, logs, a burst of
# accepts) when MAX_CONNECTIONS is fitted to the open-file limit; half of it when that is low.
RESERVED_FDS = 256
OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
CALM_S = 0.5  # after accept() ran out of descriptors: "nothing to accept" for this long


def open_file_limit() -> int | None:
    """The soft RLIMIT_NOFILE (ulimit -n); None when unlimited or not known."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def connection_budget(wanted: int, open_files: int | None) -> int:
    """MAX_CONNECTIONS as this process can hold it: at most the open-file limit less
    RESERVED_FDS (less half of the limit, when that is low)."""
    if open_files is None:
        return wanted
    room = max(open_files - RESERVED_FDS, open_files // 2)
    return max(1, min(wanted, room))


class OncePer:
    """At most one line per `interval_s` for one kind of event: the first at once, the next
    ones counted and told with the line after them. `clock`: seconds, monotonic."""

    def __init__(self, interval_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._next = float("-inf")
        self._held = 0

    def due(self) -> int | None:
        """None: hold this one back (counted); else say it, with how many were held back."""
        now = self.clock()
        if now < self._next:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._next = now + self.interval_s
        return held


def since(held: int) -> str:
    return f" ({held} more since the last such line)" if held else ""


def plain_answer(status: int, reason: str, text: str, *headers: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, written below h11 (no request
    was read, or the one read has been answered)."""
    body = f"{text}\n".encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: text/plain; charset=utf-8",
            f"content-length: {len(body)}", "connection: close",
            "x-content-type-options: nosniff", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class ConnectionLimits:
    """The settings (MAX_CONNECTIONS, HEADER_TIMEOUT_S) and what the connections of one
    server share: how many are lingering, and the refusals' log line."""

    max_connections: int = 256
    header_timeout_s: float = 10.0
    lingering: int = 0
    refusals: OncePer = field(default_factory=OncePer)

    def fitted(self, open_files: int | None) -> ConnectionLimits:
        """These limits with max_connections fitted to the open-file limit (said once)."""
        budget = connection_budget(self.max_connections, open_files)
        if budget < self.max_connections:
            logger.warning("MAX_CONNECTIONS lowered from %d to %d: the open-file limit "
                           "(ulimit -n) is %s; raise it for more", self.max_connections,
                           budget, open_files)
        return ConnectionLimits(max_connections=budget, header_timeout_s=self.header_timeout_s)

    def refused(self) -> bytes:
        """The answer to a connection beyond MAX_CONNECTIONS (and its line, once a minute)."""
        held = self.refusals.due()
        if held is not None:
            logger.warning("refused a connection: MAX_CONNECTIONS (%d) are open%s",
                           self.max_connections, since(held))
        return plain_answer(503, "Service Unavailable",
                            f"LF Gate has MAX_CONNECTIONS ({self.max_connections}) connections "
                            "open: try again in a moment", "retry-after: 1")

    def protocol(self) -> type[GuardedH11]:
        """The protocol class for uvicorn's `http=`, bound to these limits."""
        return type("GuardedH11", (GuardedH11,), {"limits": self})


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with MAX_CONNECTIONS, HEADER_TIMEOUT_S and a close instead of
    reading a body nobody will use (the module's docstring). Made by
    ConnectionLimits.protocol()."""

    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._ending = False  # answered for good: what comes in is dropped
        self._lingers = False
        self._header_timer: Any = None
        self._linger_timer: Any = None

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            self._close_softly(self.limits.refused())
            return
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        if self._lingers:
            self._lingers = False
            self.limits.lingering -= 1
        if self._refused:
            return  # never counted, never read: nothing of uvicorn's to undo
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._ending:
            return  # the answer is given: the rest is dropped
        super().data_received(data)

    def shutdown(self) -> None:
        if self._ending:
            self.transport.close()
            return
        super().shutdown()

    # -- requests --------------------------------------------------------------------------------

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a new request's head is in: the app has it now
            self._cancel_header_timer()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_header_timer()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        if self._ending or self.transport.is_closing():
            super().on_response_complete()
            return
        if self.conn.their_state is h11.SEND_BODY:
            # Answered before the body was read (401, 413, 408): close rather than read it.
            self.server_state.total_requests += 1
            self._close_softly()
            return
        self._arm_header_timer()  # before uvicorn handles a request already pipelined
        super().on_response_complete()

    # -- HEADER_TIMEOUT_S ------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s,
                                                  self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._ending or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: not a wait for a head
        waiting = (self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE)
        if waiting and self.conn.trailing_data[0]:  # part of a request head came
            self._close_softly(plain_answer(
                408, "Request Timeout", "the request head did not arrive within "
                f"HEADER_TIMEOUT_S ({self.limits.header_timeout_s:g} s)"))
        else:
            self._close_softly()

    # -- closing ---------------------------------------------------------------------------------

    def _close_softly(self, answer: bytes = b"") -> None:
        """Write `answer`, then FIN; read and drop what the client still sends until it
        closes or LINGER_S has passed (at most MAX_LINGERING at once: beyond, close now)."""
        self._ending = True
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        transport = self.transport
        if answer:
            transport.write(answer)
        if self.limits.lingering >= MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        transport.resume_reading()  # the body may have paused reading: EOF must be seen
        self._lingers = True
        self.limits.lingering += 1
        self._linger_timer = self.loop.call_later(LINGER_S, transport.close)


class CalmListener(socket.socket):
    """A listening socket whose accept(), after running out of file descriptors, says
    "nothing to accept" for CALM_S: asyncio's accept loop then makes one attempt (one log
    record, one retry) a second, not one per round of its loop."""

    _calm_until = 0.0

    @classmethod
    def around(cls, sock: socket.socket) -> CalmListener:
        """`sock` (bound, listening) as a CalmListener; `sock` itself is left detached."""
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())

    def accept(self) -> tuple[socket.socket, Any]:
        if time.monotonic() < self._calm_until:
            raise BlockingIOError(errno.EAGAIN, "out of file descriptors: waiting")
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno in OUT_OF_FDS:
                self._calm_until = time.monotonic() + CALM_S
            raise


ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message


class AcceptErrors(logging.Filter):
    """On the "asyncio" logger: its accept-failed record (a traceback, once a second while
    descriptors run short) becomes one `lfgate:` line a minute, with a count."""

    def __init__(self, limits: ConnectionLimits, open_files: int | None) -> None:
        super().__init__()
        self.limits = limits
        self.open_files = open_files
        self.lines = OncePer()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(ACCEPT_FAILED):
            return True
        held = self.lines.due()
        if held is not None:
            exc = record.exc_info[1] if record.exc_info else None
            why = getattr(exc, "strerror", None) or str(exc or "out of resources")
            logger.error("cannot accept connections: %s (the open-file limit, ulimit -n, is "
                         "%s; MAX_CONNECTIONS %d); trying again every second%s", why,
                         self.open_files or "unlimited", self.limits.max_connections,
                         since(held))
        return False


# uvicorn's warnings that a client causes once per request: one line a minute each.
PER_REQUEST_WARNINGS = ("Invalid HTTP request received.", "Unsupported upgrade request.",
                        "No supported WebSocket library detected.")


class OncePerMinute(logging.Filter):
    """On "uvicorn.error": each of PER_REQUEST_WARNINGS at most once a minute, with a count."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds = {start: OncePer() for start in PER_REQUEST_WARNINGS}

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        for start, lines in self.kinds.items():
            if text.startswith(start):
                held = lines.due()
                if held is None:
                    return False
                if held:
                    record.msg = text + since(held).replace("%", "%%")
                return True
        return True
