"""Refuse request bodies over a size limit with 413, whether or not they declare a length, and
bodies that stall with 408 (issue 24 finding 4: nobody may make the gateway hold a large or
endless body before it knows who they are).

- The limit: MAX_REQUEST_BYTES on the routes behind the token (all of /api and /v1 but the
  login: with GATEWAY_TOKEN set, lfgate.api.guards.auth has let the request in before this
  runs); OPEN_BODY_BYTES (8 KiB) on the login and the page's static files, which anyone may
  reach and which take nothing bigger (the login's JSON is a token). A declared
  Content-Length over it is refused before a byte of the body is read; a body that streams
  past it is refused then, never buffered further.
- The time: BODY_TIMEOUT_S. A body behind the token may take as long as it keeps coming
  (no read waits longer than that); one on an open route must arrive whole within it. Else
  a 408.

The body is read (up to the limit) before the app sees it, then handed over in one piece;
later receives go to the server as usual, so a client that disconnects is still noticed.
An answer given before the body was all read closes the connection (lfgate.connection_limits).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette._utils import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lfgate.api.guards.auth import needs_token

OPEN_BODY_BYTES = 8 * 1024  # the login's and the static files' limit


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0,
                 open_bytes: int = OPEN_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.open_bytes = min(open_bytes, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guarded = needs_token(get_route_path(scope))
        limit = self.max_bytes if guarded else self.open_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, guarded)
            return
        loop = asyncio.get_running_loop()
        # Behind the token: each read within the timeout. Open: the whole body within it.
        deadline = None if guarded else loop.time() + self.timeout_s
        body, more = bytearray(), True
        while more:
            wait = self.timeout_s if deadline is None else max(0.0, deadline - loop.time())
            try:
                async with asyncio.timeout(wait):
                    message = await receive()
            except TimeoutError:
                await self._stalled(scope, send, guarded)
                return
            if message["type"] != "http.request":  # the client left while sending
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await self._refuse(scope, send, guarded)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, guarded: bool) -> None:
        if guarded:
            message = f"request body over {self.max_bytes} bytes (MAX_REQUEST_BYTES)"
        else:
            message = (f"request body over {self.open_bytes} bytes: the login and the page's "
                       "files take no more")
        await _answer(scope, send, 413, "body_too_large", message)

    async def _stalled(self, scope: Scope, send: Send, guarded: bool) -> None:
        seconds = f"{self.timeout_s:g} s"
        message = (f"request body stalled: nothing came for {seconds} (BODY_TIMEOUT_S)"
                   if guarded else
                   f"request body not received within {seconds} (BODY_TIMEOUT_S)")
        await _answer(scope, send, 408, "body_timeout", message)


async def _answer(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    shaped: dict[str, Any]
    if str(scope.get("path", "")).startswith("/v1/"):  # in OpenAI's shape there
        shaped = {"error": {"message": message, "type": "invalid_request_error",
                            "param": None, "code": code}}
    else:
        shaped = {"detail": {"code": code, "message": message}}
    body = json.dumps(shaped).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
