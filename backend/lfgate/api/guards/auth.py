"""Who may use the gateway. With GATEWAY_TOKEN set, every request under /api/ and /v1/ (but
POST /api/login) must carry it, as `Authorization: Bearer <token>` (API clients) or as the
session cookie the page gets from logging in once (lfgate.api.login); anything else is a
401 with `WWW-Authenticate: Bearer`, in our error shape under /api and OpenAI's under /v1;
the OpenAPI schema and its explorer are behind it too. Only the page's static files stay
public, so the login form can load. Without a token nothing is checked (the gateway then
listens on loopback only: lfgate.config.check_listen_address).

The cookie is an HMAC-SHA256 of a fixed label keyed by the token: nothing to store, it
survives a restart, it changes when the token does, and it is never the token itself. Both
are compared in constant time. Failed logins are counted per client address by a
LoginLimiter (on app.state), bounded in the addresses it remembers.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from lfgate.api.openai.errors import is_v1, openai_error

SESSION_COOKIE = "lfgate_session"
SESSION_LABEL = b"lfgate session v1"  # what the cookie signs; a new label logs everyone out
SESSION_MAX_AGE_S = 30 * 24 * 3600
LOGIN_PATH = "/api/login"  # the one guarded-prefix path open without credentials
GUARDED_PREFIXES = ("/api", "/v1")
GUARDED_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
CHALLENGE = {"WWW-Authenticate": "Bearer"}
MAX_FAILED_LOGINS = 5  # per client address within FAILED_LOGIN_WINDOW_S; then 429
FAILED_LOGIN_WINDOW_S = 60.0
MAX_TRACKED_CLIENTS = 10_000  # addresses remembered; the least recently failed go first


def session_value(token: str) -> str:
    """The session cookie's value for this token (hex HMAC-SHA256 of SESSION_LABEL)."""
    return hmac.new(token.encode(), SESSION_LABEL, hashlib.sha256).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def needs_token(path: str) -> bool:
    """Whether a GATEWAY_TOKEN guards this route path (all of /api and /v1 but the login, and
    the schema and its explorers)."""
    if path == LOGIN_PATH:
        return False
    return path in GUARDED_PATHS or any(path == prefix or path.startswith(f"{prefix}/")
                                        for prefix in GUARDED_PREFIXES)


class LoginLimiter:
    """Failed logins per client address: after `max_failures` within `window_s`, that
    address is refused until the oldest of them is `window_s` old. `clock` (seconds,
    monotonic) is a parameter so tests can move time."""

    def __init__(self, *, max_failures: int = MAX_FAILED_LOGINS,
                 window_s: float = FAILED_LOGIN_WINDOW_S,
                 max_clients: int = MAX_TRACKED_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        cutoff = self.clock() - self.window_s
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after_s(self, client: str) -> int:
        """0: this address may try; else the whole seconds until it may."""
        failures = self._recent(client)
        if len(failures) < self.max_failures:
            return 0
        return max(1, math.ceil(failures[0] + self.window_s - self.clock()))

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        if not failures:
            failures = self._failures[client] = deque(maxlen=self.max_failures)
        failures.append(self.clock())
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def unauthorized(request: Request, message: str, *, code: str = "unauthorized"
                 ) -> JSONResponse:
    """A 401 with the Bearer challenge, shaped for /api or /v1."""
    if is_v1(request):
        return openai_error(401, message, code="invalid_api_key", headers=CHALLENGE)
    return JSONResponse({"detail": {"code": code, "message": message}}, status_code=401,
                        headers=CHALLENGE)


class AuthGate:
    """ASGI middleware: with a token, requests under /api/ and /v1/ (but the login) pass only
    with the Bearer token or the session cookie. Checked before anything reads the body."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token
        self._session = session_value(token) if token else ""

    def admits(self, headers: Headers) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and same_secret(given.strip(), self._token):
            return True
        cookie = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
        return cookie is not None and same_secret(cookie, self._session)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or not self._token
                or not needs_token(get_route_path(scope))
                or self.admits(Headers(scope=scope))):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        message = ("incorrect API key provided: send GATEWAY_TOKEN as `Authorization: Bearer "
                   "<token>` (the SDKs' api_key)" if is_v1(request) else
                   "log in first: this gateway has a GATEWAY_TOKEN; send it as `Authorization: "
                   "Bearer <token>`, or log in on the page (POST /api/login)")
        await unauthorized(request, message)(scope, receive, send)
