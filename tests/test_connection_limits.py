"""Issue 24, finding 4: an unauthenticated client cannot exhaust a token-protected gateway.
Over the real `lfgate serve` (lfgate.connection_limits, lfgate.api.guards.body_limit), with
short timeouts set for the test:

- a connection that never completes its request head (nothing at all, part of one, one byte
  at a time, or the next request on a kept-alive connection) is closed after
  HEADER_TIMEOUT_S, while a client with the token is answered;
- a body that stalls gets 408 after BODY_TIMEOUT_S, and one on the login that trickles in
  too slowly gets it too;
- a 1 MiB body to the login, to a static file or to an /api route without the token is
  refused from its head alone, before a byte of it is sent, and the connection is closed;
  with the token the same megabyte is taken;
- beyond MAX_CONNECTIONS a connection is answered 503 naming the setting, once a minute said
  in the log; under a small `ulimit -n` MAX_CONNECTIONS is lowered to fit it, and the
  descriptors running out anyway (EMFILE at accept) is one line in the log, not a flood.

In-process, without a gateway: the body limit by route and its 408 in both shapes, the
connection budget for an open-file limit, and the log's rate limit on a clock the test moves.
Every wait is on state (a socket read returning, an answer), never a fixed sleep."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lfgate.api.guards.body_limit import BodyLimit
from lfgate.connection_limits import OncePer, connection_budget
from tests import gateway_process
from tests.gateway_process import GatewayProcess
from tests.ui_rig import start_scripted_gateway

TOKEN = "issue-24-finding-4-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
MIB = 1024 * 1024
READ_S = 30.0  # the most a read waits before the test fails (the gateway never answered)


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    """start(**env): a gateway on the scripted box with GATEWAY_TOKEN and `env`; stopped
    (cleanly, its guards held) at the end."""
    started: list[GatewayProcess] = []

    def run(**env: str) -> GatewayProcess:
        folder = tmp_path / f"gateway-{len(started)}"
        gateway = start_scripted_gateway(folder, env={"GATEWAY_TOKEN": TOKEN, **env})
        started.append(gateway)
        return gateway

    yield run
    for gateway in started:
        assert gateway.stop(), gateway.log.read_text()[-3000:]


def connect(gateway: GatewayProcess, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=READ_S)
    if first:
        sock.sendall(first)
    return sock


def head(method: str, path: str, gateway: GatewayProcess, *lines: str) -> bytes:
    """A request head, Host set as a browser would."""
    return "\r\n".join([f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{gateway.port}",
                        *lines, "", ""]).encode()


def until_closed(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection (a reset counts as a
    close); fails after READ_S without either."""
    got = bytearray()
    with sock:
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return bytes(got)
            except TimeoutError:
                raise AssertionError(
                    f"the gateway kept the connection open: {bytes(got)!r}") from None
            if not chunk:
                return bytes(got)
            got += chunk


def one_answer(sock: socket.socket) -> bytes:
    """One whole answer (head and Content-Length body) on a connection kept open."""
    got = bytearray()
    while b"\r\n\r\n" not in got:
        got += sock.recv(65536) or b"!"  # a close fails the length check below
    top, _, body = bytes(got).partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in top.lower().split(b"\r\n")
                  if line.startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the whole answer: {top + body!r}"
        body += chunk
    return top + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def json_body(answer: bytes) -> dict:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def trickle_until_answered(sock: socket.socket, data: bytes, every_s: float = 0.2) -> bytes:
    """Send `data` a byte at a time, each after waiting up to `every_s` for an answer; the
    first bytes of the answer once one comes (fails if `data` runs out first)."""
    sock.settimeout(every_s)
    try:
        for byte in data:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                sock.sendall(bytes([byte]))
                continue
            return chunk
    finally:
        sock.settimeout(READ_S)
    raise AssertionError("the gateway waited for the whole trickle")


def lines_with(gateway: GatewayProcess, text: str) -> list[str]:
    return [line for line in gateway.log.read_text(errors="replace").splitlines()
            if text in line]


# --- 1. HEADER_TIMEOUT_S ------------------------------------------------------------------


def test_issue_24_finding_4_unfinished_request_heads_are_closed_after_header_timeout(
        start, reliability):
    """Issue 24 finding 4: a connection that sends nothing, part of a head, a head one byte
    at a time (slowloris), or only part of its next request after a first answer is closed
    after HEADER_TIMEOUT_S; a client with the token is answered meanwhile."""
    gateway = start(HEADER_TIMEOUT_S="1")
    silent = connect(gateway)
    partial = connect(gateway, head("GET", "/api/health", gateway)[:-4])
    kept = connect(gateway, head("GET", "/api/health", gateway, f"Authorization: Bearer {TOKEN}"))
    assert status_of(one_answer(kept)) == 200
    kept.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the next: never ends
    slow = connect(gateway)
    endless = head("GET", "/api/health", gateway)[:-2] + b"X-Slow: " + b"a" * 10_000
    assert status_of(trickle_until_answered(slow, endless)) == 408

    assert gateway.http.get("/api/health").status_code == 200  # the token's client: answered

    assert until_closed(silent) == b""  # nothing asked, nothing said: a browser's spare one
    timed_out = until_closed(partial)
    assert status_of(timed_out) == 408 and b"HEADER_TIMEOUT_S (1 s)" in timed_out
    assert status_of(until_closed(kept)) == 408
    until_closed(slow)
    assert gateway.http.get("/api/health").status_code == 200
    reliability.record("security", "issue 24 finding 4: connections that never complete a "
                       "request head (nothing sent, part of a head, a head a byte at a time, "
                       "the next request on a kept-alive connection), HEADER_TIMEOUT_S=1",
                       "each closed after HEADER_TIMEOUT_S: 408 where part of a request came, "
                       "a plain close where nothing did; a client with the token answered "
                       "meanwhile")


# --- 2. BODY_TIMEOUT_S --------------------------------------------------------------------


def test_issue_24_finding_4_a_stalled_body_gets_408_and_a_close(start, reliability):
    """Issue 24 finding 4: a body that stops coming (behind the token) and one that trickles
    into the login too slowly end with 408 after BODY_TIMEOUT_S, and the connection closes."""
    gateway = start(BODY_TIMEOUT_S="1")
    stalled = connect(gateway, head("POST", "/api/chats", gateway, f"Authorization: Bearer {TOKEN}",
                                    "Content-Type: application/json", "Content-Length: 100")
                      + b'{"title": ')
    answer = until_closed(stalled)
    assert status_of(answer) == 408, answer
    assert json_body(answer)["detail"] == {
        "code": "body_timeout",
        "message": "request body stalled: nothing came for 1 s (BODY_TIMEOUT_S)"}

    login = connect(gateway, head("POST", "/api/login", gateway, "Content-Type: application/json",
                                  "Content-Length: 5000"))
    first = trickle_until_answered(login, b'{"token": "' + b"a" * 4000)  # moving, too slowly
    answer = first + until_closed(login)
    assert status_of(answer) == 408, answer
    assert json_body(answer)["detail"]["message"] == ("request body not received within 1 s "
                                                      "(BODY_TIMEOUT_S)")
    assert gateway.http.get("/api/health").status_code == 200
    reliability.record("security", "issue 24 finding 4: a body that stops after 10 bytes "
                       "(with the token), and a login body sent a byte every 0.2 s; "
                       "BODY_TIMEOUT_S=1",
                       "408 body_timeout for each (stalled; not received within 1 s), then "
                       "the connection closed")


# --- 3. The body limit before the token -------------------------------------------------


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/api/login", 413, "body_too_large"),
    ("/index.html", 413, "body_too_large"),
    ("/", 413, "body_too_large"),
    ("/api/chats", 401, "unauthorized"),  # the token gate answers before any body is read
], ids=["login", "static-file", "page", "api-without-token"])
def test_issue_24_finding_4_a_big_body_without_the_token_is_refused_from_its_head(
        start, path, status, code, reliability):
    """Issue 24 finding 4: 1 MiB declared to the login, a static path or an /api route
    without the token is refused before a byte of the body is sent, and the connection is
    closed (the body is never read, let alone held); with the token the megabyte is taken."""
    gateway = start()
    sock = connect(gateway, head("POST", path, gateway, "Content-Type: application/json",
                                 f"Content-Length: {MIB}"))
    answer = until_closed(sock)  # not a byte of the body sent: the head alone was enough
    assert status_of(answer) == status, answer
    assert json_body(answer)["detail"]["code"] == code
    if status == 413:
        assert json_body(answer)["detail"]["message"] == (
            "request body over 8192 bytes: the login and the page's files take no more")

    # Without a length: chunks, refused once past 8 KiB, never read to the end.
    chunked = connect(gateway, head("POST", path, gateway, "Content-Type: application/json",
                                    "Transfer-Encoding: chunked"))
    chunked.sendall((b"400\r\n" + b"a" * 1024 + b"\r\n") * 16)
    assert status_of(until_closed(chunked)) == status

    # With the token: a megabyte behind it is taken (MAX_REQUEST_BYTES, 16 MiB).
    big = gateway.http.post("/api/chats", json={"system": "s" * 999_000})
    assert big.status_code == 201, big.text[:300]
    login = gateway.http.post("/api/login", json={"token": TOKEN})
    assert login.status_code == 204 and "lfgate_session" in login.headers["set-cookie"]
    reliability.record("security", f"issue 24 finding 4: POST {path} without the token, "
                       "Content-Length 1 MiB, nothing of the body sent; and 16 KiB chunked",
                       f"{status} {code} from the head alone, then the connection closed; "
                       "the same megabyte with the token to POST /api/chats: 201; the login "
                       "itself: 204")


# --- 4. MAX_CONNECTIONS and the open-file limit -------------------------------------------


def test_issue_24_finding_4_connections_beyond_max_connections_get_a_503(start, reliability):
    """Issue 24 finding 4: with MAX_CONNECTIONS=20, 20 idle connections are held until
    HEADER_TIMEOUT_S; the 10 after them are answered 503 naming the setting and closed; once
    the idle ones are closed a client with the token is answered; the log says it once."""
    gateway = start(MAX_CONNECTIONS="20", HEADER_TIMEOUT_S="3")
    gateway.http.close()  # its kept-alive connection would be one of the 20
    idle = [connect(gateway) for _ in range(20)]
    extra = [connect(gateway) for _ in range(10)]
    for sock in extra:
        answer = until_closed(sock)
        assert status_of(answer) == 503, answer
        assert b"MAX_CONNECTIONS (20)" in answer and b"retry-after: 1" in answer.lower()
    for sock in idle:
        assert until_closed(sock) == b""  # held, then closed at HEADER_TIMEOUT_S
    with httpx.Client(base_url=gateway.url, headers=BEARER, timeout=READ_S) as http:
        assert http.get("/api/health").status_code == 200
    said = lines_with(gateway, "refused a connection")
    assert said == ["lfgate: refused a connection: MAX_CONNECTIONS (20) are open"], said

    # A bad request a client can repeat at will is a line a minute too, not one each.
    for _ in range(5):
        assert status_of(until_closed(connect(gateway, b"NONSENSE\r\n\r\n"))) == 400
    assert len(lines_with(gateway, "Invalid HTTP request received")) == 1
    reliability.record("limits", "issue 24 finding 4: MAX_CONNECTIONS=20, 20 idle connections "
                       "then 10 more; 5 malformed requests",
                       "the 10 answered 503 naming MAX_CONNECTIONS (Retry-After: 1) and "
                       "closed, the 20 closed at HEADER_TIMEOUT_S, then a client with the "
                       "token answered; one log line for the refusals, one for the bad "
                       "requests")


def test_issue_24_finding_4_out_of_file_descriptors_is_one_log_line(start, monkeypatch,
                                                                      tmp_path, reliability):
    """Issue 24 finding 4: under `ulimit -n 48`, MAX_CONNECTIONS (256) is lowered to 24 at
    start-up; 60 connections at once run the descriptors out anyway (asyncio accepts a burst
    before any is answered: accept fails with EMFILE); every connection is still answered 503
    or closed, the log says EMFILE once (it was 346 MB a minute), and a client with the token
    is answered afterwards."""
    limited = tmp_path / "lfgate-ulimit"
    limited.write_text(f'#!/bin/sh\nulimit -n 48 || exit 3\nexec "{gateway_process.LFGATE}" "$@"\n')
    limited.chmod(0o755)
    monkeypatch.setattr(gateway_process, "LFGATE", str(limited))
    gateway = start(HEADER_TIMEOUT_S="2")
    assert lines_with(gateway, "MAX_CONNECTIONS lowered") == [
        "lfgate: MAX_CONNECTIONS lowered from 256 to 24: the open-file limit (ulimit -n) is "
        "48; raise it for more"]
    gateway.http.close()
    many = [connect(gateway) for _ in range(60)]
    answers = [until_closed(sock) for sock in many]
    refused = [a for a in answers if status_of(a) == 503]
    assert all(a == b"" or status_of(a) == 503 for a in answers), answers
    assert refused, "no connection was refused"
    with httpx.Client(base_url=gateway.url, headers=BEARER, timeout=READ_S) as http:
        assert http.get("/api/health").status_code == 200
    said = lines_with(gateway, "cannot accept connections")
    assert said == ["lfgate: cannot accept connections: Too many open files (the open-file "
                    "limit, ulimit -n, is 48; MAX_CONNECTIONS 24); trying again every second"]
    # No flood: (a start-up check the burst starved may say so once too), no traceback.
    assert len(lines_with(gateway, "Too many open files")) <= 3
    assert not lines_with(gateway, "Traceback")
    log = gateway.log.read_text(errors="replace").splitlines()
    assert len(log) < 30, log
    reliability.record("limits", "issue 24 finding 4: `ulimit -n 48`, 60 connections at once "
                       "(accept runs out of descriptors: EMFILE)",
                       "MAX_CONNECTIONS lowered to 24 at start-up (said once); every "
                       "connection answered 503 or closed; EMFILE one log line (was 346 MB a "
                       "minute); a client with the token answered afterwards")


def test_issue_24_finding_4_connection_budget_fits_the_open_file_limit():
    """Issue 24 finding 4: MAX_CONNECTIONS as the open-file limit allows it."""
    assert connection_budget(256, None) == 256  # unlimited
    assert connection_budget(256, 1024) == 256
    assert connection_budget(256, 20000) == 256
    assert connection_budget(1000, 1024) == 768  # 256 left to the rest of the gateway
    assert connection_budget(256, 256) == 128  # a low limit: half of it
    assert connection_budget(256, 40) == 20
    assert connection_budget(256, 1) == 1


def test_issue_24_finding_4_once_per_says_the_first_and_counts_the_rest():
    """Issue 24 finding 4: the log's rate limit, on a clock the test moves."""
    now = [100.0]
    lines = OncePer(60, clock=lambda: now[0])
    assert lines.due() == 0
    assert [lines.due() for _ in range(1000)] == [None] * 1000
    now[0] += 60
    assert lines.due() == 1000
    assert lines.due() is None


# --- The body limit in-process: the limits by route and the shapes -----------------------


async def asgi_answer(path: str, headers: list[tuple[bytes, bytes]], receive,
                      timeout_s: float = 30.0) -> tuple[int, dict, bool]:
    """(status, JSON body, whether the app behind was reached) of BodyLimit alone."""
    reached, sent = [], []

    async def app(scope, receive, send) -> None:
        reached.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message) -> None:
        sent.append(message)

    limit = BodyLimit(app, max_bytes=16 * MIB, timeout_s=timeout_s)
    await limit({"type": "http", "path": path, "headers": headers}, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"]), bool(reached)


async def never() -> dict:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_issue_24_finding_4_open_routes_take_8_kib_and_token_routes_max_request_bytes():
    """Issue 24 finding 4: the login and the page's files take 8 KiB, whatever
    MAX_REQUEST_BYTES; a route behind the token takes MAX_REQUEST_BYTES; a declared length
    over the limit is refused without reading a byte."""
    declared = [(b"content-length", str(MIB).encode())]
    for path in ("/api/login", "/", "/app.js"):
        status, body, reached = await asgi_answer(path, declared, never)
        assert (status, body["detail"]["code"], reached) == (413, "body_too_large", False)

    async def one_mib() -> dict:
        return {"type": "http.request", "body": b"x" * MIB, "more_body": False}

    status, _, reached = await asgi_answer("/api/chats", declared, one_mib)
    assert (status, reached) == (200, True)
    status, body, _ = await asgi_answer("/v1/chat/completions",
                                        [(b"content-length", str(17 * MIB).encode())], never)
    assert status == 413 and body["error"]["code"] == "body_too_large"
    assert "MAX_REQUEST_BYTES" in body["error"]["message"]


async def test_issue_24_finding_4_a_stalled_body_is_408_in_each_shape():
    """Issue 24 finding 4: BODY_TIMEOUT_S's 408 in our shape under /api and OpenAI's under
    /v1, the app never reached."""
    status, body, reached = await asgi_answer("/v1/chat/completions", [], never, timeout_s=0.05)
    assert (status, reached) == (408, False)
    assert body["error"] == {"message": "request body stalled: nothing came for 0.05 s "
                             "(BODY_TIMEOUT_S)", "type": "invalid_request_error",
                             "param": None, "code": "body_timeout"}
    status, body, _ = await asgi_answer("/api/login", [], never, timeout_s=0.05)
    assert status == 408 and body["detail"]["code"] == "body_timeout"


def test_issue_24_finding_4_refused_requests_do_not_flood_the_access_log():
    """A client sending thousands of refused requests (401s of a scanner, 413s, 429s of a
    loop) got one access line each. Now at most FAILURE_LINES a window; the next line says
    how many were left out; a server failure (5xx) is always written."""
    import logging

    from lfgate.serving import FAILURE_LINES, FAILURE_WINDOW_S, AccessLines

    now = [0.0]
    lines = AccessLines(clock=lambda: now[0])

    def record(status: int) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                                 '%s - "%s %s HTTP/%s" %d',
                                 ("1.2.3.4:5", "GET", "/api/chats", "1.1", status), None)

    kept = [lines.filter(record(401)) for _ in range(1000)]
    assert sum(kept) == FAILURE_LINES
    assert lines.filter(record(500)) and lines.filter(record(503))
    now[0] += FAILURE_WINDOW_S
    next_line = record(401)
    assert lines.filter(next_line)
    assert next_line.getMessage().endswith(
        f"401 (and {1000 - FAILURE_LINES} more 4xx answers not logged)")
