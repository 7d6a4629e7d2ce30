"""Why a /v1 request was refused, in the gateway's log: one line per 4xx with the error's
code and message (`lfgate: POST /v1/chat/completions 400 unsupported_parameter: tools ...`).

A client at its defaults (Open WebUI, an agent framework) shows its user little or nothing of
a 400, and the access line says only the status: debugging Open WebUI took its own log. The
line comes from the response itself, whoever answered (a route, the validation, the token
gate, the body limit, the origin guard), so every refusal is told the same way. Lines are
bounded like the access log's (at most LINES per WINDOW_S, the next one counting those left
out): a client in a loop cannot fill the disk.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("lfgate")
LINES = 20
WINDOW_S = 10.0
BODY_KEPT = 4096  # an error body is small; more is not read for the line


def reason(body: bytes) -> str:
    """`code: message` of an OpenAI-shaped error body (or FastAPI's `detail`), else ''."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    error = data.get("error") if isinstance(data.get("error"), dict) else data.get("detail")
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        text = f"{code}: {message}" if code else str(message or "")
        return text if message is not None else str(code or "")
    return str(error) if isinstance(error, str) else ""


class RefusalLog:
    """ASGI middleware: a line for every 4xx answer under /v1, with its reason."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self._clock = clock
        self._window_end = float("-inf")
        self._written = 0
        self._left_out = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/v1" or path.startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        status: list[int] = []
        body = bytearray()

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body" and status and \
                    400 <= status[0] < 500 and len(body) < BODY_KEPT:
                body.extend(message.get("body", b"")[:BODY_KEPT - len(body)])
                if not message.get("more_body", False):
                    self._say(scope, status[0], bytes(body))
            await send(message)

        await self.app(scope, receive, watched)

    def _say(self, scope: dict[str, Any], status: int, body: bytes) -> None:
        now = self._clock()
        if now >= self._window_end:
            self._window_end, self._written = now + WINDOW_S, 0
        if self._written >= LINES:
            self._left_out += 1
            return
        self._written += 1
        left_out, self._left_out = self._left_out, 0
        said = reason(body)
        logger.info("%s %s %d%s%s", scope.get("method", ""), scope.get("path", ""), status,
                    f" {said}" if said else "",
                    f" (and {left_out} more refusals not logged)" if left_out else "")
