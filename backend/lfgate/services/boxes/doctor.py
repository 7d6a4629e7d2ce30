"""`lfgate doctor` and GET /api/doctor: ordered checks of everything between this machine and
a reply, each with what it found and, for a failure, the exact fix. Nothing stops the run:
a check that cannot run (its ground failed) says so as `skip`.

The order follows the path: the configuration (the .env, its values, the gateway's port),
SSH (name, TCP, host key, login, round trip), the remote shell and LlamaFactory as the
wrapper's own command sees them (the box probe, remote/box_probe.py), the models, then a
smoke chat. `run_quick_checks` is the part that takes seconds, not minutes (no imports of
torch, no scan of the training folders, no smoke chat): what the gateway runs at start-up.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from lfgate.box.box import Box
from lfgate.box.errors import (
    BoxAuthFailed,
    BoxError,
    HostKeyRejected,
    KeyUnreadable,
    RemoteError,
)
from lfgate.box.ssh_box import ssh_target
from lfgate.box.wrapper_files import DISCOVER
from lfgate.config import Settings, SettingsError, box_keys_without_host, unknown_keys
from lfgate.services.boxes.facts import judge_installed, judge_models, judge_shell, judge_stack
from lfgate.services.boxes.findings import Finding, Waiting
from lfgate.services.errors import ServiceError
from lfgate.services.listen_port import how_to_move, port_holder, port_is_free
from lfgate.services.models.catalog import CONFIGURED_ID, build_catalog
from lfgate.services.models.discovery import SCAN_TIMEOUT_S, scan_job
from lfgate.services.models.registry import ModelRegistry

PROBE = "box_probe.py"
PROBE_TIMEOUT_S = 240.0
SmokeChat = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class DoctorContext:
    """What one run of the doctor works with. `smoke`: a short chat in the configured mode,
    returning {"load_s", "ttft_ms", "content"} (or raising a BoxError). `quick`: the start-up
    form (no round trips timed, no imports, no scan)."""

    settings: Settings | None
    settings_error: SettingsError | None
    env_path: Path
    box: Box | None
    smoke: SmokeChat | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    quick: bool = False


def summary(findings: list[Finding]) -> dict[str, int]:
    counts = dict.fromkeys(("pass", "warn", "fail", "skip"), 0)
    for finding in findings:
        counts[finding.status] += 1
    return counts


def summary_line(counts: dict[str, int], seconds: float) -> str:
    failed = counts["fail"] > 0
    return (f"{counts['pass']} passed, {counts['warn']} warning(s), {counts['fail']} failed, "
            f"{counts['skip']} skipped in {seconds:.1f} s"
            + (": fix the first failure and run the doctor again" if failed else ""))


def report(findings: list[Finding], seconds: float) -> dict[str, Any]:
    """The whole run for scripts (`lfgate doctor --json`, GET /api/doctor)."""
    counts = summary(findings)
    return {"ok": counts["fail"] == 0, "summary": counts, "seconds": round(seconds, 3),
            "line": summary_line(counts, seconds), "findings": [f.as_dict() for f in findings]}


async def run_doctor(context: DoctorContext) -> AsyncIterator[Finding | Waiting]:
    """Every finding in order, as soon as it is known; a Waiting before each slow part."""
    for check in (_configuration, _ssh, _box, _smoke):
        async for finding in check(context):
            yield finding


async def run_quick_checks(context: DoctorContext) -> AsyncIterator[Finding | Waiting]:
    """The checks that take seconds, for start-up (the configuration was checked by then):
    name, TCP, host key and login; the box's Python and whether it has what the mode needs
    (found, not imported); BASE_MODEL_PATH, ADAPTER_PATH and ADAPTER_DIRS on the box."""
    context.quick = True
    for check in (_ssh, _box):
        async for finding in check(context):
            yield finding


async def _configuration(context: DoctorContext) -> AsyncIterator[Finding]:
    for finding in await asyncio.to_thread(lambda: list(configuration_findings(context))):
        yield finding


def configuration_findings(context: DoctorContext) -> Iterator[Finding]:
    """Reads .env: run in a thread."""
    section = "Configuration"
    path = context.env_path
    error = context.settings_error
    problem = box_keys_without_host(path, context.settings.ssh_host
                                    if context.settings is not None else None)
    if not path.is_file():
        yield Finding(section, ".env", "warn", f"no {path} here: every key is defaulted or "
                      "comes from the environment", "Copy .env.example to .env and set "
                      "SSH_HOST, BASE_MODEL_PATH and the rest (or run where your .env is).")
    else:
        keys = dotenv_values(path)
        if problem is not None:  # SSH keys, no SSH_HOST: `lfgate serve` refuses to start
            yield Finding(section, ".env", "fail", problem.message, problem.fix)
        else:
            yield Finding(section, ".env", "pass", f"{path} parses: {len(keys)} keys")
        for warning in unknown_keys(path):
            yield Finding(section, "unknown key", "warn", warning,
                          "Rename or remove it (see .env.example).")
    if context.settings is None:
        if error is not None and problem is not None and error.message == problem.message:
            yield Finding(section, "values", "skip", "needs the .env above fixed first")
        else:
            yield Finding(section, "values", "fail", error.message if error else "invalid",
                          (error.fix if error else "") or "Fix that key in .env; `lfgate "
                          "doctor` checks again.")
        return
    fields = type(context.settings).model_fields
    given = {k.lower() for k in (dotenv_values(path) if path.is_file() else {})}
    defaulted = sorted(name.upper() for name in fields if name not in given
                       and name not in context.settings.model_fields_set)
    yield Finding(section, "values", "pass", "every key is valid; defaulted: "
                  + (", ".join(defaulted) or "none"))
    yield _port_finding(context.settings)


def _port_finding(settings: Settings) -> Finding:
    """The gateway's port: free, or served by an LF Gate already (this one, when the gateway
    runs the doctor), or taken by something else, which `lfgate serve` would stop at."""
    host, port = settings.gateway_host, settings.gateway_port
    if port_is_free(host, port):
        return Finding("Configuration", "port", "pass", f"{host}:{port} is free for "
                       "`lfgate serve`")
    holder = port_holder(host, port)
    if holder.lfgate:
        return Finding("Configuration", "port", "pass", f"{host}:{port} is served by "
                       f"{holder.description}: this gateway, or one started before")
    return Finding("Configuration", "port", "fail", f"port {port} on {host} is taken by "
                   f"{holder.description}: `lfgate serve` cannot listen there",
                   f"Stop it, or {how_to_move(port)}.")


def _target(settings: Settings) -> tuple[str, int]:
    return settings.ssh_host, settings.ssh_port or 22


async def _first_hop(settings: Settings) -> tuple[str, int, str]:
    """The address a login dials first, as the ssh config says (HostName, Port; the first
    ProxyJump host, if any), and a note of how it was found, for the findings."""
    try:
        target = await asyncio.to_thread(ssh_target, settings)
    except Exception:  # an unreadable config: the login check below says what is wrong
        host, port = _target(settings)
        return host, port, ""
    host, port = target.first_hop
    if target.jumps:
        return host, port, (f" (the first ProxyJump host of {settings.ssh_host}, behind it "
                            f"{' -> '.join([*target.jumps[1:], target.host])})")
    if target.host != settings.ssh_host:
        return host, port, f" ({settings.ssh_host}'s HostName in the ssh config)"
    return host, port, ""


async def _ssh(context: DoctorContext) -> AsyncIterator[Finding]:
    section = "SSH"
    settings, box = context.settings, context.box
    if settings is None or box is None:
        yield Finding(section, "connection", "skip", "needs a valid configuration")
        return
    if settings.is_local:
        yield Finding(section, "connection", "pass", "SSH_HOST is empty: the box is this "
                      "machine; nothing to connect to")
        return
    host, port, how = await _first_hop(settings)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    try:
        addresses = await asyncio.wait_for(loop.getaddrinfo(host, port,
                                                            type=socket.SOCK_STREAM), 10)
        names = sorted({a[4][0] for a in addresses})
        yield Finding(section, "name", "pass", f"{host}{how} is {', '.join(names)}",
                      seconds=time.monotonic() - started)
    except (OSError, TimeoutError) as exc:
        via = " (an alias of ~/.ssh/config?)" if not settings.ssh_config_path else ""
        yield Finding(section, "name", "warn" if settings.ssh_config_path else "fail",
                      f"{host} does not resolve{via}: {exc}",
                      "Check SSH_HOST's spelling; for a Host alias of ~/.ssh/config set "
                      "SSH_CONFIG_PATH=~/.ssh/config.", time.monotonic() - started)
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                settings.ssh_connect_timeout)
        banner = (await asyncio.wait_for(reader.readline(), 10)).decode(errors="replace")
        writer.close()
        yield Finding(section, "TCP", "pass", f"{host}:{port}{how} answers "
                      f"({banner.strip() or 'no banner'})", seconds=time.monotonic() - started)
    except (OSError, TimeoutError) as exc:
        yield Finding(section, "TCP", "fail", f"cannot reach {host}:{port}: "
                      f"{exc or type(exc).__name__}",
                      "Is the box running, and SSH_PORT its SSH port (rented boxes often use "
                      "another one)? Try `ssh -p PORT user@host` by hand.",
                      time.monotonic() - started)
        for name in ("host key", "login", "round trip"):
            yield Finding(section, name, "skip", "needs a TCP connection")
        return
    started = time.monotonic()
    try:
        await box.connect()
    except HostKeyRejected as exc:
        yield Finding(section, "host key", "fail", exc.message, exc.hint,
                      time.monotonic() - started)
        yield Finding(section, "login", "skip", "needs a trusted host key")
        yield Finding(section, "round trip", "skip", "needs a login")
        return
    except BoxAuthFailed as exc:
        if isinstance(exc, KeyUnreadable):  # SSH_KEY_PATH could not be read: nothing was sent
            yield Finding(section, "host key", "skip", "needs a readable SSH_KEY_PATH")
        else:
            yield Finding(section, "host key", "pass", "known and matching",
                          seconds=time.monotonic() - started)
        # The message names every method tried (key file, agent, password), the hint the fix
        # for each (ssh-copy-id for a key); neither ever holds a secret.
        yield Finding(section, "login", "fail", exc.message, exc.hint,
                      time.monotonic() - started)
        yield Finding(section, "round trip", "skip", "needs a login")
        return
    except BoxError as exc:
        yield Finding(section, "host key", "fail", exc.message, exc.hint,
                      time.monotonic() - started)
        return
    yield Finding(section, "host key", "pass", "known and matching")
    describe = getattr(box, "login_description", None)  # the SSH box: which method logged in
    key = describe() if describe else (f"key {settings.ssh_key_path}" if settings.ssh_key_path
                                       else "a default key or agent")
    safer = (f"; a key is safer than a password: `ssh-copy-id -p {port} "
             f"{settings.ssh_user or 'user'}@{host}` once, then set SSH_KEY_PATH and remove "
             "SSH_PASSWORD" if getattr(box, "password_login", False) else "")
    yield Finding(section, "login", "pass", f"logged in as {settings.ssh_user or 'you'} with "
                  f"{key}{safer}", seconds=time.monotonic() - started)
    if context.quick:
        return
    trips = []
    for _ in range(3):
        trips.append(await box.round_trip_s())
    trips.sort()
    yield Finding(section, "round trip", "pass" if trips[1] < 0.5 else "warn",
                  f"{trips[1] * 1000:.0f} ms a command (median of 3)",
                  "" if trips[1] < 0.5 else "A slow link: replies will start late; a box "
                  "closer to you, or mosh/tmux for training, helps.")


async def _box(context: DoctorContext) -> AsyncIterator[Finding]:
    settings, box = context.settings, context.box
    if settings is None or box is None:
        for section in ("Remote shell", "LlamaFactory", "Models"):
            yield Finding(section, "checks", "skip", "needs a valid configuration")
        return
    if not box.connected and not settings.is_local:
        for section in ("Remote shell", "LlamaFactory", "Models"):
            yield Finding(section, "checks", "skip", "needs an SSH login")
        return
    job = {"mode": settings.chat_mode, "cli_path": settings.llamafactory_cli_path or None,
           "work_dir": settings.remote_work_dir or None,
           "base_model_path": settings.base_model_path,
           "adapter_paths": [settings.adapter_path] if settings.adapter_path else [],
           "adapter_dirs": settings.adapter_dir_list, "imports": not context.quick}
    # The probe runs as the wrapper does, except in REMOTE_WORK_DIR (checked by the probe
    # itself, so a missing folder is a finding rather than no facts at all).
    probe_box = box.variant(remote_work_dir="") if settings.remote_work_dir else box
    if not context.quick:
        yield Waiting("Remote shell", "asking the box (its Python imports torch and "
                      "LlamaFactory: up to a few minutes on a cold box)")
    started = time.monotonic()
    conda_error: BoxError | None = None
    try:
        facts = await probe_box.run_program(PROBE, job, PROBE_TIMEOUT_S)
    except BoxError as exc:
        if not settings.conda_env:
            yield Finding("Remote shell", "python", "fail", exc.message, exc.hint,
                          time.monotonic() - started)
            return
        conda_error = exc  # try again without conda: the rest can still be told
        try:
            probe_box = probe_box.variant(conda_env="")
            facts = await probe_box.run_program(PROBE, job, PROBE_TIMEOUT_S)
        except BoxError as again:
            yield Finding("Remote shell", "python", "fail", again.message, again.hint,
                          time.monotonic() - started)
            return
    context.facts = facts
    for finding in judge_shell(settings, facts, conda_error):
        yield finding
    for finding in (judge_installed if context.quick else judge_stack)(settings, facts):
        yield finding
    catalog, scan_error = None, None
    if not context.quick and (settings.adapter_dir_list or settings.adapter_path):
        try:
            catalog = build_catalog(settings, await probe_box.run_program(
                DISCOVER, scan_job(settings), SCAN_TIMEOUT_S))
        except BoxError as exc:
            scan_error = exc.message
    for finding in judge_models(settings, facts, catalog, scan_error):
        yield finding


async def _smoke(context: DoctorContext) -> AsyncIterator[Finding]:
    section = "Smoke chat"
    if context.smoke is None or context.settings is None:
        yield Finding(section, "chat", "skip", "needs a valid configuration")
        return
    if context.box is not None and not context.box.connected and not context.settings.is_local:
        yield Finding(section, "chat", "skip", "needs an SSH login")
        return
    mode = context.settings.chat_mode
    yield Waiting(section, "loading the model on the box and saying hi (a real model: "
                  "minutes)")
    started = time.monotonic()
    try:
        result = await context.smoke()
    except BoxError as exc:
        yield Finding(section, "chat", "fail", f"{mode} mode: {exc.message}", exc.hint,
                      time.monotonic() - started)
        return
    except ServiceError as exc:  # the configured model is not usable (its scan said why)
        yield Finding(section, "chat", "fail", f"{mode} mode: {exc.message}",
                      "Fix the failures above; the model list (/api/models) says more.",
                      time.monotonic() - started)
        return
    yield Finding(section, "chat", "pass",
                  f"{mode} mode: loaded in {result['load_s']:.1f} s, first token in "
                  f"{result['ttft_ms']:.0f} ms, said {result['content'][:60]!r}",
                  seconds=time.monotonic() - started)


SMOKE_PARAMS = {"max_new_tokens": 4, "temperature": 0}


def registry_smoke(registry: ModelRegistry) -> SmokeChat:
    """A smoke chat through the registry: "hi" to the box's configured model, a few tokens (a
    model already loaded is not loaded again)."""
    model = f"{registry.id_prefix}{CONFIGURED_ID}"

    async def smoke() -> dict[str, Any]:
        loaded = time.monotonic()
        served = await registry.ready_session(model, SMOKE_PARAMS)
        load_s = served.slot.load_seconds or (time.monotonic() - loaded)
        started, ttft_ms, text = time.monotonic(), None, ""
        async for event in served.session.chat(f"doctor-{time.monotonic_ns()}",
                                                [{"role": "user", "content": "hi"}],
                                                SMOKE_PARAMS, served.choice):
            if event["event"] == "delta" and ttft_ms is None:
                ttft_ms = (time.monotonic() - started) * 1000
            if event["event"] == "done":
                text = event["content"]
            if event["event"] == "error":
                raise RemoteError(event.get("message", "the chat failed"),
                                  hint=event.get("hint", ""), code=event.get("code"))
        return {"load_s": load_s, "ttft_ms": ttft_ms if ttft_ms is not None else
                (time.monotonic() - started) * 1000, "content": text}

    return smoke
