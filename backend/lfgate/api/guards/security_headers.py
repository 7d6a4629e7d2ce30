"""Security headers on every response: a Content-Security-Policy with no inline script, and
nosniff, no referrer, no framing.

The page's one inline script is its import map (browsers do not load an import map from a
file yet), so `script-src` allows exactly that script by its SHA-256, computed here from the
shipped index.html when the app starts: editing the import map needs no second edit here.

Styles: `style-src 'self'` keeps out every `<style>` element and stylesheet from elsewhere,
but KaTeX lays math out with `style="..."` attributes in the markup it writes (heights,
vertical offsets), so `style-src-attr 'unsafe-inline'` lets attributes through. That much is
safe: model output reaches the DOM only through marked (raw HTML escaped) and DOMPurify, and
an attribute can neither run script nor load anything from another origin (`img-src` and
`font-src` stop `url(...)`). Preact's own `style=` props are set through the CSSOM, which CSP
does not govern. `img-src` allows `data:` (an inline image a model wrote costs nothing and
leaks nothing); a remote image in a reply is blocked, so a reply cannot carry the chat's text
away in an image's URL.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from importlib.resources.abc import Traversable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INLINE_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
HAS_SRC = re.compile(r"\bsrc\s*=", re.IGNORECASE)


def inline_script_hashes(page_html: str) -> list[str]:
    """CSP sources (`'sha256-…'`) for each inline `<script>` of a page, hashed as the browser
    hashes them: the text between the tags, line ends normalised to LF as HTML parsing does."""
    text = page_html.replace("\r\n", "\n").replace("\r", "\n")
    hashes = []
    for match in INLINE_SCRIPT.finditer(text):
        if HAS_SRC.search(match[1]):
            continue
        digest = hashlib.sha256(match[2].encode("utf-8")).digest()
        hashes.append(f"'sha256-{base64.b64encode(digest).decode('ascii')}'")
    return hashes


def content_security_policy(page_html: str) -> str:
    script_src = " ".join(["'self'", *inline_script_hashes(page_html)])
    return "; ".join([
        "default-src 'self'",
        f"script-src {script_src}",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def security_headers(page_html: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(page_html),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def shipped_page() -> Traversable:
    return resources.files("lfgate.frontend") / "index.html"


class SecurityHeaders:
    """ASGI middleware adding `security_headers` of `page` (default: the shipped index.html)
    to every HTTP response; a header a route set itself is left as it is."""

    def __init__(self, app: ASGIApp, page: Traversable | None = None) -> None:
        self.app = app
        try:
            page_html = (page or shipped_page()).read_text(encoding="utf-8")
        except OSError:  # no page shipped: nothing inline to allow
            page_html = ""
        self.headers = security_headers(page_html)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
