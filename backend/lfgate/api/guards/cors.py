"""CORS for /v1, for the origins GATEWAY_CORS_ORIGINS names, and nothing else.

Browser-side OpenAI clients (a notebook page, a web playground, a dev server on
localhost:3000) call /v1 from their own origin; the browser asks first (a preflight) and
reads the answer only if the gateway says that origin may. By default no origin may: the
origin guard (lfgate.api.guards.origin) refuses every request another origin's page makes.
An origin listed here passes that guard on /v1 only (never /api, the page's own API) and
gets Starlette's CORS answers. The token is still asked for (Authorization is an allowed
header; no cookies, so no credentials mode).
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


def is_v1_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class V1Cors:
    """ASGI middleware, outside the origin guard: CORS answers for /v1 and the origins
    listed; every other path and origin as if it were not there."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self._cors = CORSMiddleware(app, allow_origins=origins, allow_methods=["GET", "POST"],
                                    allow_headers=["*"], max_age=600) if origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._cors is not None and scope["type"] == "http" and is_v1_path(scope["path"]):
            await self._cors(scope, receive, send)
            return
        await self.app(scope, receive, send)
