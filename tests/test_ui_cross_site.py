"""Issue 24, finding 2, in Chromium against the real `lfgate serve`: a web page on another
site, open in the same browser as the user's gateway page (logged in, with a token), tries
every route of the gateway, reads and changes, as fetches and as a form; and a page that
re-pointed its own name at the gateway (DNS rebinding, simulated with Chromium's host
resolver rules: *.attacker.test is 127.0.0.1) tries the same as "same origin". Nothing is
read, nothing changes, and the gateway's log shows each attempt refused with 403."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.test_ui import REPLY, open_page, send, wait_reply_done
from tests.test_ui_login import log_in

expect.set_options(timeout=20_000)

TOKEN = "cross-site-token-5d1e0c8a"
ATTACK_PAGE = b"<!doctype html><html><body><p>cute cats</p></body></html>"

# Every request the page makes, as an attacker would, cookies included: a POST as no-cors
# (no preflight; the answer opaque), a read as cors (to read the answer), PATCH and DELETE
# as cors (a browser sends them only after an OPTIONS preflight, which the gateway refuses).
TRY_EVERY_ROUTE = """async ([base, routes]) => {
  const out = [];
  for (const [method, path] of routes) {
    const init = method === 'POST'
      ? { method, mode: 'no-cors', body: '{"title": "pwned"}',
          headers: { 'content-type': 'text/plain' } }
      : method === 'GET' ? { method, mode: 'cors' }
      : { method, mode: 'cors', body: '{"title": "pwned"}',
          headers: { 'content-type': 'application/json' } };
    try {
      const response = await fetch(base + path, { ...init, credentials: 'include' });
      out.push([method, path, method === 'POST' ? 'sent' : 'read: ' + (await response.text())]);
    } catch (error) {
      out.push([method, path, 'blocked']);
    }
  }
  return out;
}"""
PREFLIGHTED = ("PUT", "PATCH", "DELETE")  # what reaches the gateway is their OPTIONS


@pytest.fixture
def attacker_site() -> Iterator[str]:
    """Another site's page, served for real on this machine as http://evil.attacker.test:PORT
    (a page fulfilled by Playwright would count as a public address, and Chromium's Private
    Network Access would then block its requests to loopback before the gateway saw them:
    a site on the local network, or a browser without that check, gets through)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(ATTACK_PAGE)))
            self.end_headers()
            self.wfile.write(ATTACK_PAGE)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://evil.attacker.test:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def routes_of(gateway, ids: dict[str, str]) -> list[tuple[str, str]]:
    """(method, path) of every route in the gateway's schema, its ids filled in."""
    schema = gateway.http.get("/openapi.json").json()
    return [(method.upper(), re.sub(r"\{(\w+)\}", lambda m: ids[m[1]], path))
            for path, operations in schema["paths"].items() for method in operations]


def refused_in_log(gateway, method: str, path: str) -> bool:
    return f'"{method} {path} HTTP/1.1" 403' in gateway.log.read_text()


def state(gateway) -> dict:
    chats = gateway.http.get("/api/chats").json()["chats"]
    return {
        "chats": [(c["id"], c["title"], c.get("archived")) for c in chats],
        "messages": {c["id"]: len(gateway.http.get(f"/api/chats/{c['id']}").json()["messages"])
                     for c in chats},
        "model": gateway.http.get("/api/models/default/status").json()["status"],
        "sets": len(gateway.http.get("/api/prompt-sets").json()["sets"]),
        "runs": len(gateway.http.get("/api/runs").json()["runs"]),
    }


@pytest.mark.parametrize("token", ["", TOKEN], ids=["no token", "token"])
def test_a_page_on_another_site_can_neither_read_nor_change_anything(
        page: Page, make_scripted_gateway, attacker_site: str, token: str,
        reliability) -> None:
    gateway = make_scripted_gateway(env={"GATEWAY_TOKEN": token} if token else None)
    page.goto(gateway.url)  # the user's own page, logged in when there is a token
    if token:
        log_in(page, TOKEN)
    expect(page.locator(".connection")).to_contain_text("Box")
    send(page, "hello")
    wait_reply_done(page, 1)
    chat_id = re.search(r"#/chat/(\w+)$", page.url)[1]
    reply_id = gateway.http.get(f"/api/chats/{chat_id}").json()["messages"][-1]["id"]
    made = gateway.http.post("/api/prompt-sets", json={"content": "one\ntwo\n"}).json()
    before = state(gateway)
    assert before["model"] == "ready" and before["messages"][chat_id] == 2

    ids = {"chat_id": chat_id, "model_id": "default", "turn_id": reply_id,
           "compare_id": reply_id, "set_id": made["id"], "run_id": "0" * 32}
    routes = routes_of(gateway, ids)
    assert len(routes) > 40
    attacker = page.context.new_page()
    attacker.goto(f"{attacker_site}/")
    tried = attacker.evaluate(TRY_EVERY_ROUTE, [gateway.url, routes])
    read = [t for t in tried if t[2].startswith("read")]
    assert read == [], read  # no CORS: nothing the gateway answers reaches the page
    for method, path in routes:  # and the gateway refused each before it ran
        sent = "OPTIONS" if method in PREFLIGHTED else method
        assert refused_in_log(gateway, sent, path), (sent, path)

    # A form needs no script and no fetch: a POST navigation, refused the same way.
    attacker.set_content(f"""<form method="post" enctype="text/plain"
        action="{gateway.url}/api/models/default/unload"><input name="a" value="b">
        <button>go</button></form>""")
    with attacker.expect_navigation():
        attacker.click("button")
    assert "cross_site_request" in attacker.content()

    # DNS rebinding: the attacker's own name, re-pointed at the gateway. The page is
    # refused, and its script's same-origin requests with it.
    rebound = f"http://rebind.attacker.test:{gateway.port}"
    answer = attacker.goto(f"{rebound}/")
    assert answer.status == 403 and "host_not_allowed" in attacker.content()
    statuses = attacker.evaluate("""async (paths) => Promise.all(paths.map(async (path) => {
        const method = path === '/api/chats' ? 'GET' : 'POST';
        return (await fetch(path, { method })).status; }))""",
        ["/api/chats", "/api/models/refresh", f"/api/chats/{chat_id}/regenerate"])
    assert statuses == [403, 403, 403]

    assert state(gateway) == before
    # The user's own page still works, logged in as it was.
    page.reload()
    expect(page.locator(REPLY)).to_have_count(1)
    send(page, "still mine")
    wait_reply_done(page, 2)
    open_page(page, gateway)
    reliability.record(
        "security", f"A web page on another site, in the user's browser, tries every route "
                    f"({len(routes)}) as fetches and a form, then under a rebound name "
                    f"({'with' if token else 'without'} GATEWAY_TOKEN)",
        "each refused with 403 (cross_site_request, host_not_allowed) before anything ran: "
        "nothing read, nothing changed; the user's own page goes on")


def test_a_listed_cors_origin_calls_v1_from_the_browser_and_nothing_else(
        page: Page, make_scripted_gateway, attacker_site: str, reliability) -> None:
    """Issue 25 (GATEWAY_CORS_ORIGINS): a browser-side OpenAI client served from a listed
    origin lists the models and chats through /v1 with the token, in Chromium, preflights
    and all; the same page still cannot read or change /api, and a request without the
    token is refused (and says why, readable by the page)."""
    gateway = make_scripted_gateway(env={"GATEWAY_TOKEN": TOKEN,
                                         "GATEWAY_CORS_ORIGINS": attacker_site})
    client = page.context.new_page()
    client.goto(f"{attacker_site}/")
    answers = client.evaluate("""async ([base, token]) => {
      const auth = { authorization: 'Bearer ' + token, 'content-type': 'application/json' };
      const models = await (await fetch(base + '/v1/models', { headers: auth })).json();
      const chat = await fetch(base + '/v1/chat/completions', { method: 'POST', headers: auth,
        body: JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'hi' }] }) });
      const anonymous = await fetch(base + '/v1/models');
      let api = 'read';
      try { await (await fetch(base + '/api/chats', { headers: auth })).text(); }
      catch (error) { api = 'blocked'; }
      const reply = (await chat.json()).choices[0].message.content;
      return { ids: models.data.map((m) => m.id), chat: reply, anonymous: anonymous.status, api };
    }""", [gateway.url, TOKEN])
    assert "default" in answers["ids"]
    assert answers["chat"] == "Echo #1 from tiny-base + tiny-adapter: hi"
    assert answers["anonymous"] == 401
    assert answers["api"] == "blocked"
    assert refused_in_log(gateway, "OPTIONS", "/api/chats")  # its preflight, refused
    reliability.record(
        "security", "A page on an origin listed in GATEWAY_CORS_ORIGINS calls the gateway "
                    "from Chromium (with the token, then without; /v1, then /api)",
        "/v1 lists the models and answers the chat (preflight and CORS headers from the "
        "gateway); without the token 401, readable by the page; /api refused with 403")
