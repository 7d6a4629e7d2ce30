"""GATEWAY_TOKEN (issue 17, security): every route of the OpenAPI schema but the login is
refused without it, so a route added later cannot be forgotten; Bearer and the login cookie
let requests in; failed logins are rate-limited on a clock the test moves; the token shows in
no answer; and the real `lfgate serve` refuses to listen beyond loopback without a token.
The page's login is in tests/test_ui_login.py."""

from __future__ import annotations

import re
import subprocess
from http.cookies import SimpleCookie

import httpx
import pytest

from lfgate.api.guards.auth import SESSION_COOKIE, SESSION_MAX_AGE_S, LoginLimiter, session_value
from lfgate.config import SettingsError, check_listen_address, is_loopback, load_settings
from tests.gateway_process import LFGATE, GatewayProcess
from tests.rig.ports import free_port
from tests.test_models_api import Client, gateway
from tests.ui_rig import scripted_env, start_scripted_gateway

TOKEN = "s3cret-gateway-token-0123456789"
LOGIN = "/api/login"
# Sent with every request of the sweeps: an unknown box makes the doctor answer 404 at once
# instead of running its checks; every other route ignores it.
PARAMS = {"box": "no-such-box"}


class Clock:
    """The login limiter's clock, moved by the test: no sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def operations(app) -> list[tuple[str, str]]:
    """(method, path with dummy ids) of every operation in the app's OpenAPI schema."""
    found = []
    for path, item in app.openapi()["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "no-such-id", path)))
    return found


def assert_no_token(response: httpx.Response) -> None:
    assert TOKEN not in response.text
    assert all(TOKEN not in value for value in response.headers.values())


def assert_refused(response: httpx.Response, path: str) -> None:
    assert response.status_code == 401, (path, response.status_code, response.text)
    assert response.headers["www-authenticate"] == "Bearer"
    if path.startswith("/v1/"):
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
    else:
        assert response.json()["detail"]["code"] == "unauthorized"
    assert_no_token(response)


async def test_every_route_needs_the_token(tmp_path, monkeypatch, reliability):
    app = gateway(tmp_path, monkeypatch, gateway_token=TOKEN)
    routes = [(method, path) for method, path in operations(app) if path != LOGIN]
    assert len(routes) >= 40  # the schema was read, and not to a stub
    # Nothing outside /api and /v1 but the static page: a route elsewhere would be public.
    assert all(path.startswith(("/api/", "/v1/")) for _, path in routes)
    answers: set[tuple[int, str]] = set()  # (status, error code) of the refusals, for the doc
    async with Client(app) as http:
        for method, path in routes:
            refused = await http.request(method, path, params=PARAMS)
            assert_refused(refused, path)
            error = refused.json().get("error") or refused.json()["detail"]
            answers.add((refused.status_code, error["code"]))
            for wrong in ({"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN},
                          {"Authorization": f"Basic {TOKEN}"},
                          {"Cookie": f"{SESSION_COOKIE}={session_value('another')}"},
                          {"Cookie": f"{SESSION_COOKIE}={TOKEN}"}):
                assert_refused(await http.request(method, path, params=PARAMS,
                                                  headers=wrong), path)
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for method, path in routes:
            response = await http.request(method, path, params=PARAMS, headers=bearer)
            assert response.status_code != 401, (method, path, response.text)
            assert_no_token(response)
        # The schema and its explorer need the token too; only the page itself is public,
        # so its login form can load.
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert_refused(await http.get(path), path)
            assert (await http.get(path, headers=bearer)).status_code == 200, path
        for path in ("/", "/app.js", "/components/login.js", "/vendor/preact/preact.module.js"):
            assert (await http.get(path)).status_code == 200, path
        health = await http.get("/api/health", headers={"authorization": f"bearer {TOKEN}"})
        assert health.status_code == 200 and health.json()["auth"] is True
    said = ", ".join(f"{status} {code}" for status, code in sorted(answers))
    reliability.record("security", f"no token, on every route of the OpenAPI schema but the "
                       f"login ({len(routes)} routes under /api and /v1)",
                       f"all {len(routes)} refused ({said}, WWW-Authenticate: Bearer), the "
                       "schema and its explorer too; with the Bearer token none is refused; "
                       "the token is in no answer")
    reliability.record("security", "a wrong token on every route: another Bearer token, the "
                       "token without Bearer, as Basic, a cookie signed with another token, "
                       "the token itself as the cookie",
                       f"each refused on all {len(routes)} routes ({said}); the token is in "
                       "no answer")


async def test_login_sets_a_cookie_that_lets_the_page_in_and_logout_clears_it(tmp_path,
                                                                              monkeypatch):
    app = gateway(tmp_path, monkeypatch, gateway_token=TOKEN)
    async with Client(app) as http:
        assert (await http.get("/api/chats")).status_code == 401
        wrong = await http.post(LOGIN, json={"token": "not-it"})
        assert wrong.status_code == 401 and wrong.json()["detail"]["code"] == "wrong_token"
        assert "set-cookie" not in wrong.headers
        for bad in ({"tokn": TOKEN}, {"token": [TOKEN]}, [TOKEN]):  # never echoed back
            refused = await http.post(LOGIN, json=bad)
            assert refused.status_code == 422, refused.text
            assert_no_token(refused)
        response = await http.post(LOGIN, json={"token": TOKEN})
        assert response.status_code == 204, response.text
        assert_no_token(response)
        header = response.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower(): part.strip()
                      for part in header.split(";")[1:]}
        assert attributes["httponly"] == "HttpOnly"
        assert attributes["samesite"] == "SameSite=Strict"
        assert attributes["path"] == "Path=/"
        assert attributes["max-age"] == f"Max-Age={SESSION_MAX_AGE_S}"
        assert "secure" not in attributes  # plain http: a Secure cookie would not come back
        cookie = SimpleCookie(header)[SESSION_COOKIE].value
        assert cookie == session_value(TOKEN) and TOKEN not in cookie
        # The client keeps the cookie, as a browser does: the page's calls now pass.
        assert (await http.get("/api/chats")).status_code == 200
        assert (await http.get("/v1/models")).status_code == 200
        logout = await http.post("/api/logout")
        assert logout.status_code == 204
        assert "Max-Age=0" in logout.headers["set-cookie"]
        assert (await http.get("/api/chats")).status_code == 401
    # Stateless: the same cookie works on a restarted gateway with the same token...
    async with Client(gateway(tmp_path, monkeypatch, gateway_token=TOKEN)) as http:
        http.cookies.set(SESSION_COOKIE, cookie)
        assert (await http.get("/api/chats")).status_code == 200
    # ...and not once the token has changed.
    async with Client(gateway(tmp_path, monkeypatch, gateway_token=TOKEN + "-new")) as http:
        http.cookies.set(SESSION_COOKIE, cookie)
        assert (await http.get("/api/chats")).status_code == 401


async def test_the_cookie_is_secure_over_https(tmp_path, monkeypatch):
    app = gateway(tmp_path, monkeypatch, gateway_token=TOKEN)
    async with Client(app) as http:
        response = await http.post("https://localhost/api/login", json={"token": TOKEN})
        assert response.status_code == 204
        assert "; Secure" in response.headers["set-cookie"]


async def test_failed_logins_are_rate_limited_per_address(tmp_path, monkeypatch,
                                                          reliability):
    app = gateway(tmp_path, monkeypatch, gateway_token=TOKEN)
    clock = Clock()
    app.state.login_limiter = LoginLimiter(clock=clock)
    async with Client(app) as http:
        for _ in range(5):
            assert (await http.post(LOGIN, json={"token": "guess"})).status_code == 401
            clock.now += 1
        # Five wrong within the minute: now even the right token is refused, with the wait.
        limited = await http.post(LOGIN, json={"token": TOKEN})
        assert limited.status_code == 429, limited.text
        assert limited.headers["retry-after"] == "55"  # the first failure was 5 s ago
        assert limited.json()["detail"]["code"] == "too_many_logins"
        assert "55 s" in limited.json()["detail"]["message"]
        assert "set-cookie" not in limited.headers
        assert_no_token(limited)
        # Another address is not held back by this one's failures.
        other = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.7", 9)),
                                  base_url="http://localhost")
        async with other:
            assert (await other.post(LOGIN, json={"token": TOKEN})).status_code == 204
        # Bearer clients are not affected by the login limit.
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await http.get("/api/chats", headers=bearer)).status_code == 200
        clock.now += 54
        assert (await http.post(LOGIN, json={"token": TOKEN})).headers["retry-after"] == "1"
        clock.now += 1  # the oldest failure is a minute old: the limit lifts
        assert (await http.post(LOGIN, json={"token": TOKEN})).status_code == 204
        # A success forgets the failures: five more are allowed before the next 429.
        for _ in range(5):
            assert (await http.post(LOGIN, json={"token": "guess"})).status_code == 401
        assert (await http.post(LOGIN, json={"token": "guess"})).status_code == 429
    detail = limited.json()["detail"]
    reliability.record("security", "five wrong logins from one address within a minute, then "
                       "the right token",
                       f"{limited.status_code} {detail['code']} with Retry-After "
                       f"{limited.headers['retry-after']}: \"{detail['message']}\", no cookie; "
                       "another address and Bearer clients are not held back; lifted a minute "
                       "after the first failure")


def test_the_limiter_remembers_a_bounded_number_of_addresses():
    clock = Clock()
    limiter = LoginLimiter(max_failures=2, window_s=60, max_clients=3, clock=clock)
    for address in ("a", "b", "c", "d"):
        limiter.failed(address)
        limiter.failed(address)
        assert limiter.retry_after_s(address) == 60
    assert limiter.retry_after_s("a") == 0  # the least recent one was let go
    assert [limiter.retry_after_s(address) for address in "bcd"] == [60, 60, 60]
    for _ in range(100):  # each address keeps its last max_failures times only
        limiter.failed("d")
    assert limiter.retry_after_s("d") == 60
    clock.now += 60
    assert [limiter.retry_after_s(address) for address in "bcd"] == [0, 0, 0]


async def test_without_a_token_nothing_is_asked(tmp_path, monkeypatch):
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        assert (await http.get("/api/chats")).status_code == 200
        assert (await http.get("/v1/models")).status_code == 200
        assert (await http.get("/api/health")).json()["auth"] is False
        login = await http.post(LOGIN, json={"token": "anything"})
        assert login.status_code == 409 and login.json()["detail"]["code"] == "no_token"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LocalHost", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.20", False), ("gpu-gateway.example", False), ("", False),
])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_create_app_refuses_another_address_without_a_token(tmp_path, monkeypatch):
    with pytest.raises(SettingsError) as error:
        gateway(tmp_path, monkeypatch, gateway_host="0.0.0.0")
    assert "GATEWAY_HOST" in str(error.value) and "GATEWAY_TOKEN" in str(error.value)
    gateway(tmp_path, monkeypatch, gateway_host="::1")  # loopback: no token needed
    gateway(tmp_path, monkeypatch, gateway_host="0.0.0.0", gateway_token=TOKEN)
    check_listen_address(load_settings(base_model_path="/m"))  # the default: 127.0.0.1


@pytest.mark.parametrize("how", ["--host", "GATEWAY_HOST"])
def test_lfgate_serve_refuses_to_listen_beyond_loopback_without_a_token(tmp_path, how):
    env = scripted_env(tmp_path)
    args = [LFGATE, "serve", "--port", str(free_port())]
    if how == "--host":
        args += ["--host", "0.0.0.0"]
    else:
        env["GATEWAY_HOST"] = "0.0.0.0"
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line, line
    assert line.startswith("lfgate: GATEWAY_HOST=0.0.0.0 is not a loopback address")
    assert "GATEWAY_TOKEN" in line and "anyone on the network could use the box" in line


def test_lfgate_serve_listens_beyond_loopback_with_a_token(tmp_path):
    gateway = GatewayProcess({**scripted_env(tmp_path), "GATEWAY_HOST": "0.0.0.0",
                              "GATEWAY_TOKEN": TOKEN}, tmp_path)
    try:
        health = gateway.http.get("/api/health")  # sent with the Bearer token
        assert health.status_code == 200 and health.json()["auth"] is True
        anonymous = httpx.get(f"{gateway.url}/api/health", timeout=30)
        assert anonymous.status_code == 401
        assert httpx.get(f"{gateway.url}/", timeout=30).status_code == 200
    finally:
        assert gateway.stop()
    assert TOKEN not in gateway.log.read_text()


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"], ids=["no proxy", "a proxy named"])
def test_x_forwarded_for_counts_only_from_a_named_proxy(tmp_path, trusted):
    """Issue 24, finding 11: uvicorn believed X-Forwarded-For from 127.0.0.1, and a tunnel
    or any local program is 127.0.0.1: a header per attempt escaped the login limit. Now
    only TRUSTED_PROXIES' headers are believed."""
    gateway = start_scripted_gateway(tmp_path / "gw", env={
        "GATEWAY_TOKEN": TOKEN, "TRUSTED_PROXIES": trusted})
    try:
        statuses = [gateway.http.post("/api/login", json={"token": "wrong"},
                                      headers={"X-Forwarded-For": f"10.9.8.{n}"}).status_code
                    for n in range(7)]
    finally:
        gateway.stop()
    if trusted:  # seven clients, one wrong login each
        assert statuses == [401] * 7
    else:  # one client, 127.0.0.1, whatever the header says
        assert statuses == [401] * 5 + [429] * 2
