"""The page under its Content-Security-Policy (backend/lfgate/api/guards/security_headers.py) in a
real browser (Debian's Chromium under Playwright) against `lfgate serve` on the scripted box
double: every view works with no CSP violation and asks nothing of another origin; markup a
model writes stays inert; and the policy itself stops inline script that got past the
sanitiser."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Request, expect

from lfgate.api.guards.security_headers import content_security_policy, inline_script_hashes
from tests.gateway_process import GatewayProcess
from tests.rig.saves_tree import make_saves
from tests.test_ui import MODEL, MODELS, REPLY, open_page, open_picker, send, wait_reply_done
from tests.test_ui_compare import A, start_compare, wait_compare_done
from tests.ui_rig import SCRIPTED_BASE

expect.set_options(timeout=20_000)

ROOT = Path(__file__).resolve().parent.parent
VIEWPORT = {"width": 1280, "height": 800}
# Every violation the page reports, recorded before any of its own script runs.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolations.push({directive: event.effectiveDirective,
                               blocked: event.blockedURI, sample: event.sample});
});
"""
THIRD_PARTY = "third-party.example"
# Echoed back by the double as its reply (Echo #n from ...: <this>); no trigger word in it.
HOSTILE = (
    "<script>window.__pwned = 'script'</script>\n\n"
    "<button onclick=\"window.__pwned = 'onclick'\">press me</button>\n\n"
    "[tap here](javascript:window.__pwned='link')\n\n"
    f"<iframe src=\"https://{THIRD_PARTY}/frame\" onload=\"window.__pwned = 'frame'\"></iframe>\n\n"
    f"![pixel](https://{THIRD_PARTY}/pixel.png?chat=secret)\n\n"
    "end of the hostile sample"
)
# What a rendered reply must never hold (the import map is the page's own inline script).
ACTIVE = ("script:not([src]):not([type='importmap']), iframe, object, embed, "
          "[onerror], [onclick], [onload], a[href^='javascript:' i]")


@pytest.fixture
def gateway(make_scripted_gateway, tmp_path: Path) -> GatewayProcess:
    """The scripted box with a saves/ tree, so the picker and compare have runs to show."""
    saves = tmp_path / "saves"
    make_saves(saves, SCRIPTED_BASE)
    return make_scripted_gateway(env={"ADAPTER_DIRS": str(saves)})


@pytest.fixture
def csp_page(make_page) -> Page:
    """A 1280 px page that records CSP violations (`violations(page)`) and every request
    its context makes (`page.requested`)."""
    page = make_page(viewport=VIEWPORT)
    page.add_init_script(RECORD_VIOLATIONS)
    page.requested = []
    page.context.on("request", lambda request: page.requested.append(request))
    return page


def violations(page: Page) -> list[dict]:
    return page.evaluate("window.__cspViolations")


def foreign(page: Page, origin: str) -> list[Request]:
    """Requests to anywhere but the gateway's origin (data: and blob: are the page's own)."""
    def elsewhere(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in ("data", "blob") and f"{parts.scheme}://{parts.netloc}" != origin

    return [request for request in page.requested if elsewhere(request.url)]


def next_frames(page: Page) -> None:
    """Two animation frames: a click's tasks (a javascript: URL runs as one) have run."""
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => "
                  "requestAnimationFrame(() => done())))")


def test_every_view_works_under_the_csp_and_asks_nothing_of_other_origins(
        csp_page: Page, gateway: GatewayProcess, reliability) -> None:
    page = csp_page
    shipped = (ROOT / "frontend" / "index.html").read_text()
    response = page.goto(gateway.url)
    headers = response.headers
    assert headers["content-security-policy"] == content_security_policy(shipped)
    assert "'unsafe-inline'" not in re.search(r"script-src[^;]*", headers[
        "content-security-policy"])[0]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    for path in ("/api/health", "/v1/models", "/no-such-file"):  # JSON and errors too
        assert gateway.http.get(path).headers["content-security-policy"] == headers[
            "content-security-policy"], path
    expect(page.locator(".connection")).to_contain_text("Box")

    # A chat: Markdown, a highlighted code block and KaTeX math (which lays out with style
    # attributes: their heights must apply).
    send(page, "some code please")
    wait_reply_done(page, 1)
    reply = page.locator(REPLY)
    expect(reply.locator("pre code .hljs-keyword").first).to_be_visible()
    expect(reply.locator(".katex-display")).to_have_count(1)
    strut = reply.locator(".katex-display .katex-html .strut").first
    assert strut.evaluate("el => el.getAttribute('style')")  # KaTeX wrote one
    assert strut.evaluate("el => parseFloat(getComputedStyle(el).height)") > 0

    # The model picker (it rescans the box), then the parameters drawer.
    open_picker(page)
    expect(page.locator(f"{MODELS} [role='option'][data-model='{A}']")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator(MODELS)).to_have_count(0)
    expect(page.locator(MODEL)).to_be_visible()
    page.click("text=Parameters")
    drawer = page.locator("[role='dialog'][aria-label='Generation settings']")
    expect(drawer.locator("input[aria-label='Temperature']")).to_be_visible()
    drawer.locator("button[aria-label='Close settings']").click()
    expect(drawer).to_have_count(0)

    # A compare of two models, a vote, then the leaderboard it feeds.
    start_compare(page, gateway, ["default", A])
    send(page, "one question for both")
    wait_compare_done(page, 1)
    page.locator("[role='group'][aria-label='Vote on turn 1']").get_by_role(
        "button", name="A is better").click()
    expect(page.locator("[aria-label='Your vote on turn 1']")).to_contain_text("Voted")
    page.get_by_role("button", name="Leaderboard").click()
    board = page.locator("main[aria-label='Leaderboard']")
    expect(board.locator(".board-votes")).to_have_text("1 vote")
    expect(board.locator("table.standings tbody tr")).to_have_count(2)

    assert violations(page) == []
    assert page.js_errors == []
    paths = {urlsplit(request.url).path for request in page.requested}
    assert {"/", "/app.js", "/api/chat", "/api/compare", "/api/leaderboard"} <= paths, paths
    assert [request.url for request in foreign(page, gateway.url)] == []
    reliability.record(
        "security", "every view of the page in Chromium under its Content-Security-Policy: a "
        "chat with code and math, the model picker, the parameters, a compare and its vote, "
        "the leaderboard",
        f"CSP violations: {len(violations(page)) or 'none'}; third-party requests: "
        f"{len(foreign(page, gateway.url)) or 'none'}; script-src without 'unsafe-inline'; "
        "every answer, JSON and errors too, carries the policy, nosniff, no-referrer, DENY")


def test_markup_in_a_reply_stays_inert_and_loads_nothing(csp_page: Page,
                                                         gateway: GatewayProcess,
                                                         reliability) -> None:
    page = csp_page
    open_page(page, gateway)
    send(page, "xss please")  # <img onerror>, <script>, javascript: links (window.__xss)
    wait_reply_done(page, 1)
    page.fill("#message", HOSTILE)
    page.keyboard.press("Enter")
    wait_reply_done(page, 2)
    last = page.locator(REPLY).nth(1)
    expect(last).to_contain_text("end of the hostile sample")
    expect(last).to_contain_text("<script>window.__pwned = 'script'</script>")  # as text
    expect(last).to_contain_text("<iframe src=")

    assert page.locator(ACTIVE).count() == 0
    for link in ("click me", "raw link", "tap here"):  # whatever is left of each is inert
        anchors = page.locator(REPLY).locator("a", has_text=link)
        if anchors.count():
            anchors.first.click()
    page.locator(REPLY).get_by_text("press me").first.click()
    next_frames(page)
    assert page.evaluate("[window.__xss, window.__pwned]") == [None, None]

    # The Markdown image is the one element the sanitiser keeps: the CSP refuses its load,
    # so nothing about the chat reaches the other origin. That refusal is all that happens.
    blocked = violations(page)
    assert blocked and all(v["directive"] == "img-src" and THIRD_PARTY in v["blocked"]
                           for v in blocked), blocked
    # Chromium reports the refused load as a request that failed with "csp", before it
    # reaches the network.
    attempts = foreign(page, gateway.url)
    assert attempts, "the reply's image was never tried: is the sample still rendered?"
    left = [(request.url, request.failure) for request in attempts
            if request.failure != "csp"]
    assert left == []
    assert all("Content Security Policy" in error and THIRD_PARTY in error
               for error in page.js_errors), page.js_errors
    refused = sorted({v["directive"] for v in blocked})
    reliability.record(
        "security", "a reply holding <script>, <img onerror>, an onclick button, javascript: "
        "links, an iframe and a remote image (a tracking pixel)",
        "shown as text, nothing runs; the image's load is refused by the CSP "
        f"({', '.join(refused)}) before the network: third-party requests that left the "
        f"page: {len(left) or 'none'}")


def test_the_policy_stops_inline_script_that_got_past_the_sanitiser(
        csp_page: Page, gateway: GatewayProcess, reliability) -> None:
    """Defence in depth: markup with a handler and an inline script, put straight into the
    DOM as if the sanitiser had let it through, does not run."""
    page = csp_page
    open_page(page, gateway)
    page.evaluate("""() => {
        const box = document.createElement('div');
        box.innerHTML = '<img src="data:," onerror="window.__pwned = 1">'
                      + '<button id="csp-probe" onclick="window.__pwned = 2">probe</button>';
        document.body.append(box);
        const script = document.createElement('script');
        script.textContent = 'window.__pwned = 3';
        document.body.append(script);
    }""")
    page.click("#csp-probe")
    page.wait_for_function("window.__cspViolations.length >= 3")
    assert page.evaluate("window.__pwned") is None
    directives = sorted(v["directive"] for v in violations(page))
    assert directives == ["script-src-attr", "script-src-attr", "script-src-elem"], directives
    reliability.record(
        "security", "an inline script and two inline handlers put straight into the page, as "
        "if the sanitiser had let them through",
        f"none runs: the CSP refuses each ({', '.join(directives)})")


def test_the_import_map_hash_does_not_depend_on_line_ends() -> None:
    """A checkout with CRLF line ends ships the same page to the browser (HTML parsing
    makes every line end LF before the script's text is hashed)."""
    shipped = (ROOT / "frontend" / "index.html").read_text()
    [own] = inline_script_hashes(shipped)  # the import map, and nothing else inline
    assert inline_script_hashes(shipped.replace("\n", "\r\n")) == [own]
    assert inline_script_hashes('<script src="app.js"></script>') == []
