"""Issue 24, finding 2: a Host this gateway is not reached by (DNS rebinding) and a browser
request from another origin are refused on every route, token or not
(lfgate.api.guards.origin). In-process here; in Chromium against `lfgate serve` in
tests/test_ui_cross_site.py."""

from __future__ import annotations

import contextlib
import ipaddress
import re

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lfgate.api.guards.origin import allowed_hosts, host_allowed, host_name
from lfgate.app import create_app
from lfgate.config import load_settings

CROSS_SITE = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"}
STATE_CHANGING = ("post", "put", "patch", "delete")


def app_with(tmp_path, **settings):
    return create_app(load_settings(base_model_path="/m", ssh_host="",
                                    database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
                                    **settings))


async def ask(app, method: str, url: str, headers: dict[str, str] | None = None,
              **kwargs) -> httpx.Response:
    """One request without the lifespan: the guards answer before any route runs."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        return await http.request(method, url, headers=headers or {}, **kwargs)


def refused(response: httpx.Response, code: str) -> bool:
    if response.status_code != 403:
        return False
    body = response.json()
    found = body["error"]["code"] if "error" in body else body["detail"]["code"]
    return found == code


@pytest.mark.parametrize("url", ["http://attacker.example/api/chats",
                                 "http://attacker.example:8000/",
                                 "http://rebind.attacker.test:8000/api/health",
                                 "http://127.0.0.1.attacker.example/api/models"])
async def test_a_host_the_gateway_is_not_reached_by_is_refused(tmp_path, url):
    response = await ask(app_with(tmp_path), "GET", url)
    assert refused(response, "host_not_allowed"), response.text
    assert "GATEWAY_ALLOWED_HOSTS" in response.text


async def test_v1_refuses_in_openai_shape(tmp_path):
    response = await ask(app_with(tmp_path), "GET", "http://attacker.example/v1/models")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "10.1.2.3",
                                  "app.localhost:8000", "LOCALHOST.", "gate.lan:8443"])
async def test_loopback_names_addresses_and_listed_names_are_answered(tmp_path, host):
    app = app_with(tmp_path, gateway_allowed_hosts="gate.lan, other.example")
    response = await ask(app, "GET", "http://localhost/api/nope", headers={"host": host})
    assert response.status_code == 404, response.text  # past the guard, to the router


async def test_star_answers_any_name_and_the_listen_address_is_known(tmp_path):
    anything = app_with(tmp_path, gateway_allowed_hosts="*")
    assert (await ask(anything, "GET", "http://whatever.example/api/nope")).status_code == 404
    named = app_with(tmp_path, gateway_host="gpu-gate.internal", gateway_token="t" * 32)
    assert (await ask(named, "GET", "http://gpu-gate.internal/static-nope")).status_code == 404


async def test_every_state_changing_route_refuses_a_cross_site_request(tmp_path):
    """Every route in the app's schema, with and without a token: a browser's request from
    another site is refused before anything runs."""
    for token in ("", "x" * 32):
        app = app_with(tmp_path, gateway_token=token)
        routes = [(method.upper(), re.sub(r"\{[^}]+\}", "x", path))
                  for path, operations in app.openapi()["paths"].items()
                  for method in operations if method in STATE_CHANGING]
        assert len(routes) > 20, routes
        for method, path in routes:
            response = await ask(app, method, f"http://127.0.0.1:8000{path}",
                                 headers=CROSS_SITE, content=b"{}")
            assert refused(response, "cross_site_request"), (method, path, response.text)
            for origin in ("http://evil.example", "null", "http://127.0.0.1:9999"):
                response = await ask(app, method, f"http://127.0.0.1:8000{path}",
                                     headers={"origin": origin}, content=b"{}")
                assert refused(response, "cross_site_request"), (method, path, origin)


async def test_reads_from_another_site_are_refused_but_a_link_to_the_page_opens_it(tmp_path):
    app = app_with(tmp_path)
    for mode in ("cors", "no-cors"):
        response = await ask(app, "GET", "http://127.0.0.1:8000/api/chats",
                             headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": mode})
        assert refused(response, "cross_site_request")
    same_site = await ask(app, "GET", "http://localhost:8000/api/chats",
                          headers={"sec-fetch-site": "same-site", "sec-fetch-mode": "cors"})
    assert refused(same_site, "cross_site_request")  # another port of localhost is not us
    link = await ask(app, "GET", "http://127.0.0.1:8000/",
                     headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"})
    assert link.status_code == 200 and "<html" in link.text.lower()


async def test_the_gateways_own_page_and_programs_pass(tmp_path):
    app = app_with(tmp_path, gateway_allowed_hosts="gate.lan")
    own = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "cors",
           "origin": "http://127.0.0.1:8000"}
    response = await ask(app, "POST", "http://127.0.0.1:8000/api/nope", headers=own)
    assert response.status_code in (404, 405)  # past the guard, to the router
    proxied = {"origin": "https://gate.lan", "host": "127.0.0.1:8000"}  # a proxy kept Origin
    assert (await ask(app, "POST", "http://127.0.0.1:8000/api/nope",
                      headers=proxied)).status_code in (404, 405)
    program = await ask(app, "POST", "http://127.0.0.1:8000/api/nope")  # no browser headers
    assert program.status_code in (404, 405)


hosts = st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n\x00"),
                max_size=60)


@given(hosts)
def test_any_host_header_is_parsed_without_error_and_strangers_are_refused(header):
    name = host_name(header)
    names = allowed_hosts("127.0.0.1", "gate.lan")
    allowed = host_allowed(name, names)
    stranger = (name not in {"localhost", "127.0.0.1", "gate.lan"}
                and not name.endswith(".localhost"))
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name)
        stranger = False
    assert allowed != stranger


PAGE = "http://localhost:3000"
FROM_PAGE = {"origin": PAGE, "sec-fetch-site": "same-site", "sec-fetch-mode": "cors"}


async def test_cors_origins_may_call_v1_and_only_v1(tmp_path):
    """Issue 25 (GATEWAY_CORS_ORIGINS): a browser-side OpenAI client on a listed origin gets
    its preflight and its answers on /v1, the token still asked for; /api stays closed to
    it, another origin stays refused, and without the setting nothing changes."""
    app = app_with(tmp_path, gateway_cors_origins=f"{PAGE}, https://play.example",
                   gateway_token="s3cret-token")
    preflight = await ask(app, "OPTIONS", "http://127.0.0.1:8000/v1/chat/completions",
                          {**FROM_PAGE, "access-control-request-method": "POST",
                           "access-control-request-headers": "authorization,content-type"})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == PAGE
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    no_token = await ask(app, "GET", "http://127.0.0.1:8000/v1/models", FROM_PAGE)
    assert no_token.status_code == 401  # the token is still asked for
    assert no_token.headers["access-control-allow-origin"] == PAGE  # and the page can read why
    page_api = await ask(app, "POST", "http://127.0.0.1:8000/api/chats",
                         {**FROM_PAGE, "authorization": "Bearer s3cret-token"}, json={})
    assert refused(page_api, "cross_site_request")
    assert "access-control-allow-origin" not in page_api.headers
    other = {**FROM_PAGE, "origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    elsewhere = await ask(app, "POST", "http://127.0.0.1:8000/v1/chat/completions",
                          {**other, "authorization": "Bearer s3cret-token"}, json={})
    assert refused(elsewhere, "cross_site_request")
    assert "access-control-allow-origin" not in elsewhere.headers
    closed = app_with(tmp_path)
    assert refused(await ask(closed, "GET", "http://127.0.0.1:8000/v1/models", FROM_PAGE),
                   "cross_site_request")


@pytest.mark.parametrize(("value", "says"), [
    ("*", "needs GATEWAY_TOKEN"),
    ("localhost:3000", "is not an origin"),
    ("http://localhost:3000/app", "is not an origin"),
])
def test_a_wrong_cors_origin_is_refused_naming_it(tmp_path, value, says):
    from lfgate.config import SettingsError

    with pytest.raises(SettingsError, match=says):
        app_with(tmp_path, gateway_cors_origins=value)
