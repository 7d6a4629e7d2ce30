"""Only this gateway's own page, and programs that are not browsers, may use it.

Why: a gateway on 127.0.0.1 is reachable by every web page the user opens. Two holes that
local model servers have had CVEs for follow, token or not:
- DNS rebinding: a page on attacker.example re-points its name at 127.0.0.1 and then reads
  and changes everything as "same origin". Its requests carry `Host: attacker.example`, so
  a request is answered only when its Host is a name this gateway is reached by: a loopback
  name, an IP address (a rebinding needs a name), the address it listens on, or one listed
  in GATEWAY_ALLOWED_HOSTS (`*`: any, behind a proxy that checks).
- Cross-site requests: a form or a no-cors fetch on another site can POST without a CORS
  preflight. Browsers say where a request comes from (`Sec-Fetch-Site`, and `Origin` on
  anything but a plain GET): a request from another origin is refused, except a top-level
  navigation (a link to the page). Programs (curl, the SDKs, Open WebUI's server) send
  neither header and pass; a browser page on another origin cannot read an answer either,
  as the gateway sends no CORS headers (unless GATEWAY_CORS_ORIGINS names that origin: then
  its pages may call /v1, and only /v1; lfgate.api.guards.cors).
Refused with 403 and a code saying which (our error shape under /api, OpenAI's under /v1).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from lfgate.api.guards.cors import is_v1_path
from lfgate.api.openai.errors import is_v1, openai_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FROM_HERE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site values of our own page


def host_name(host_header: str) -> str:
    """The name in a Host header: port and IPv6 brackets off, lower case, no final dot."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(listen_host: str, extra: str) -> frozenset[str] | None:
    """The Host names answered (besides IP addresses); None: any (`*` in the list)."""
    names = {"localhost", host_name(listen_host)}
    for item in extra.split(","):
        item = item.strip()
        if item == "*":
            return None
        if item:
            names.add(host_name(item))
    return frozenset(n for n in names if n)


def host_allowed(name: str, names: frozenset[str] | None) -> bool:
    if names is None or _is_ip(name) or name in names:
        return True
    return name.endswith(".localhost")  # always this machine (RFC 6761)


class SameOriginGate:
    """ASGI middleware, outermost: Host first, then where a browser says the request is
    from. Nothing else (the token, the body) is looked at before."""

    def __init__(self, app: ASGIApp, listen_host: str, allowed: str = "",
                 cors_origins: list[str] | None = None) -> None:
        """`cors_origins`: origins whose pages may call /v1 (GATEWAY_CORS_ORIGINS; `*` any):
        let through here, answered by lfgate.api.guards.cors."""
        self.app = app
        self._names = allowed_hosts(listen_host, allowed)
        self._cors = frozenset(cors_origins or ())
        # Origins a proxy in front may keep while it rewrites Host: the names listed.
        self._listed = frozenset(host_name(i) for i in allowed.split(",") if i.strip())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(scope["method"], headers,
                               cors=self._cors if is_v1_path(scope["path"]) else frozenset())
        if refusal is None:
            await self.app(scope, receive, send)
            return
        code, message = refusal
        request = Request(scope)
        if is_v1(request):
            response = openai_error(403, message, code=code)
        else:
            response = JSONResponse({"detail": {"code": code, "message": message}},
                                    status_code=403)
        await response(scope, receive, send)

    def refusal(self, method: str, headers: Headers, cors: frozenset[str] = frozenset()
                ) -> tuple[str, str] | None:
        """(code, message) when the request is refused, else None. `cors`: the origins whose
        pages may make this request (GATEWAY_CORS_ORIGINS, on /v1)."""
        host = headers.get("host")
        if host is not None and not host_allowed(host_name(host), self._names):
            return ("host_not_allowed",
                    f"this gateway does not answer to the host name {host_name(host)!r} (a "
                    "page that re-pointed its own name here, or a name it was not told "
                    "about): add the name to GATEWAY_ALLOWED_HOSTS in .env if you reach the "
                    "gateway by it")
        origin = headers.get("origin")
        if origin is not None and ("*" in cors or origin.rstrip("/") in cors):
            return None  # a page GATEWAY_CORS_ORIGINS lets call /v1
        site = headers.get("sec-fetch-site")
        if site is not None and site not in FROM_HERE:
            navigation = (method in SAFE_METHODS and headers.get("sec-fetch-mode") == "navigate")
            if not navigation:
                return ("cross_site_request",
                        f"refused a request from another web site ({site}): only this "
                        "gateway's own page may use it from a browser")
        if origin is not None and method not in SAFE_METHODS and not self._from_here(
                origin, host):
            return ("cross_site_request",
                    f"refused a request from another origin ({origin[:100]}): only this "
                    "gateway's own page may use it from a browser")
        return None

    def _from_here(self, origin: str, host: str | None) -> bool:
        """The page's origin is the gateway's own (or a name listed for a proxy)."""
        parts = urlsplit(origin)
        if origin == "null" or parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        if host is not None and parts.netloc.lower() == host.strip().lower():
            return True
        return "*" in self._listed or host_name(parts.netloc) in self._listed
