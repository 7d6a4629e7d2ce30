"""How the client commands reach a running gateway: its address and token from the same
settings `lfgate serve` reads, and one line for anything that goes wrong on the way (no
gateway there, a refused request), never a traceback."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from lfgate.config import ENV_FILE, Settings

# A stream hears at least a keep-alive every 5 s (api/sse.py), so a minute of silence is a
# dead connection; a gateway that is there accepts at once.
TIMEOUT = httpx.Timeout(60, connect=5)
# Listen addresses meaning "every interface": this machine reaches them at loopback.
ANY_ADDRESS = ("", "0.0.0.0", "::")
START_IT = "start it with `lfgate serve` (or make run)"


class CommandError(Exception):
    """What a client command says in one line instead of a traceback, and its exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class GatewayAddress(BaseSettings):
    """The three keys of the gateway's settings a client needs, read as `lfgate serve` reads
    them (the environment over the .env file) but without the rest: a machine with no box
    configured (make run's demo box, a laptop with a tunnel to the gateway) has no
    BASE_MODEL_PATH, and needs none to talk to a gateway."""

    model_config = SettingsConfigDict(env_file=ENV_FILE, env_file_encoding="utf-8",
                                      extra="ignore", case_sensitive=False)

    gateway_host: str = Settings.model_fields["gateway_host"].default
    gateway_port: int = Field(default=Settings.model_fields["gateway_port"].default,
                              ge=1, le=65535)
    gateway_token: SecretStr = SecretStr("")

    @property
    def url(self) -> str:
        return gateway_url(self.gateway_host, self.gateway_port)


def gateway_url(host: str, port: int) -> str:
    """http://HOST:PORT for a listen address; an IPv6 one in brackets."""
    host = host.strip().strip("[]")
    if host in ANY_ADDRESS:
        host = "127.0.0.1"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return f"http://{host}:{port}"


def read_address(env_file: Path | None) -> GatewayAddress:
    """GATEWAY_HOST, GATEWAY_PORT and GATEWAY_TOKEN from the environment and `env_file`
    (default ./.env), or a CommandError naming the bad key."""
    path = Path(ENV_FILE) if env_file is None else env_file
    try:
        return GatewayAddress(_env_file=path)  # type: ignore[call-arg]
    except ValidationError as exc:
        first = exc.errors()[0]
        key = "_".join(str(part) for part in first["loc"]).upper()
        raise CommandError(f"invalid configuration: {key}: {first['msg']}", status=2) from None


def refusal(response: httpx.Response) -> str:
    """One line from an error answer: the gateway's `{"detail": {"code", "message"}}`, a
    validation error's first field, or the status alone."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict) and detail.get("message"):
        text = f"{detail.get('code') or response.status_code}: {detail['message']}"
    elif isinstance(detail, list) and detail and isinstance(detail[0], dict):
        where = ".".join(str(part) for part in detail[0].get("loc", ())[1:])
        text = f"{where or 'request'}: {detail[0].get('msg')}"
    else:
        text = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    if response.status_code == 401:
        text += " (set GATEWAY_TOKEN, in .env or the environment, to the gateway's token)"
    return text


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) per Server-Sent Event; comments (keep-alives), ids and `retry` are
    skipped. The gateway's data is ASCII-only JSON (api/sse.py), so splitting lines is safe."""
    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


class GatewayClient:
    """One gateway's HTTP API, with its token as Bearer when there is one. Safe to call from
    two threads at once (a reply streams on one while Ctrl-C's stop goes out on the other):
    httpx's connection pool is."""

    def __init__(self, url: str, token: str = "",
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """httpx's errors as the one line the user reads."""
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise CommandError(f"no gateway at {self.url}: {START_IT}") from None
        except httpx.TimeoutException:
            raise CommandError(f"the gateway at {self.url} went silent (no answer for "
                               f"{TIMEOUT.read:.0f} s)") from None
        except httpx.TransportError as exc:
            why = str(exc) or type(exc).__name__
            raise CommandError(f"lost the gateway at {self.url}: {why}") from None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; its JSON answer (None for an empty one), or a CommandError."""
        with self._reaching():
            response = self._http.request(method, path, json=body)
        if response.is_error:
            raise CommandError(refusal(response))
        try:
            return response.json() if response.content else None
        except ValueError:
            raise CommandError(f"{self.url}{path} answered with something else than JSON: "
                               "is --url an LF Gate?") from None

    @contextlib.contextmanager
    def events(self, path: str, body: dict[str, Any]
               ) -> Iterator[Iterator[tuple[str, dict[str, Any]]]]:
        """POST `body` and follow the answer's Server-Sent Events."""
        with self._reaching(), self._http.stream("POST", path, json=body) as response:
            if response.is_error:
                response.read()
                raise CommandError(refusal(response))
            yield sse_events(response.iter_lines())
