"""What `lfgate serve` and `make run` say and do at start-up (issue 23, newcomer defects 5, 6,
7, 9 and 12), over the real command in a folder of its own with its own .env:

- a port that is taken: one line naming the holder and how to choose another, exit 1, no URL
  and no traceback; the doctor's port check says the same (or that an LF Gate serves it);
- SSH keys in .env with SSH_HOST empty (a typo such as SSH_HSOT): refused in one line naming
  the typo, and the doctor's .env check fails with the same reason and fix; .env.example's
  own SSH lines (SSH_HOST empty, the rest defaults) still serve this machine;
- a bad value: the line names the key, the value given and the values allowed, and the
  doctor's fix says the same;
- an unreachable box or a BASE_MODEL_PATH not on the box: said at start-up (the doctor's quick
  checks, after the gateway listens), and /api/health is not "ok" for a box never reached;
  the page says the box was never reached, not that it went away;
- the terminal: the gateway's `lfgate:` lines, where chats are kept and the URL; no uvicorn
  chatter, no line per static file; SIGTERM (and Ctrl-C under make) is a clean exit;
- the demo of `make run` keeps its chats apart from a real gateway's.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from lfgate.services.boxes.doctor_run import doctor_from_env
from tests.gateway_process import LFGATE, STOPPED, GatewayProcess
from tests.rig.ports import free_port
from tests.ui_rig import scripted_env, start_scripted_gateway

ROOT = Path(__file__).resolve().parent.parent
MINIMAL_PATH = {"PATH": "/usr/bin:/bin"}
TIMED_LINE = re.compile(r"^\S.*\s+\d+\.\d s$")  # tests/rig/timed.sh: "LABEL   12.3 s"
READY_S = 180  # the longest a start-up is waited for on a loaded machine (state, not a sleep)


def write_dotenv(folder: Path, dotenv: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    return path


def serve(folder: Path, dotenv: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`lfgate serve` in `folder` with `dotenv` as its .env, for a start-up that stops."""
    write_dotenv(folder, dotenv)
    return subprocess.run([LFGATE, "serve", *args], cwd=folder, capture_output=True, text=True,
                          timeout=120, env={**MINIMAL_PATH, "HOME": str(folder)})


def one_line(result: subprocess.CompletedProcess) -> str:
    """The one line a refused start-up prints, checked to be one, with no traceback and no
    URL for a gateway that never ran."""
    text = result.stderr.strip()
    assert "\n" not in text, result.stderr
    assert "Traceback" not in result.stderr and "open http" not in result.stderr, result.stderr
    assert result.stdout == "", result.stdout
    return text


async def run_doctor(folder: Path, monkeypatch: pytest.MonkeyPatch, dotenv: dict[str, str]
                     ) -> dict[str, Any]:
    """`lfgate doctor --json`'s code path, here, with `dotenv` as ./.env."""
    env = write_dotenv(folder, dotenv)
    monkeypatch.chdir(folder)
    out = io.StringIO()
    await doctor_from_env(env_path=env, as_json=True, out=out)
    return json.loads(out.getvalue())


def check(report: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    return next(f for f in report["findings"] if (f["section"], f["name"]) == (section, name))


def wait_for(read: Any, what: str, timeout_s: float = READY_S) -> Any:
    """Poll `read` until it returns something true: waits on state, fails saying what."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := read():
            return found
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture(scope="module")
def running_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """An LF Gate that only holds its port, for the tests of a port an LF Gate serves: one
    for the module (it stops cleanly at the end, checked then)."""
    running = start_scripted_gateway(tmp_path_factory.mktemp("running"))
    yield running
    assert running.stop(), running.log.read_text()[-3000:]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port this test process listens on (not an LF Gate)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# --- 5. A port that is taken --------------------------------------------------------------


def test_a_taken_port_is_one_line_naming_its_holder_and_how_to_move(tmp_path, held_port):
    result = serve(tmp_path, {"BASE_MODEL_PATH": "/m", "LFGATE_DATA_DIR": str(tmp_path)},
                   "--port", str(held_port))
    line = one_line(result)
    assert result.returncode == 1, result.stderr
    assert line == (f"lfgate: port {held_port} on 127.0.0.1 is taken by pid {os.getpid()} "
                    f"({Path(f'/proc/{os.getpid()}/comm').read_text().strip()}): stop it, or "
                    f"choose another port: GATEWAY_PORT={held_port + 1} in .env, or "
                    f"`lfgate serve --port {held_port + 1}`")
    assert not (tmp_path / "lfgate.db").exists()  # nothing was started


def test_a_port_an_lf_gate_serves_says_so(tmp_path, running_gateway):
    running = running_gateway
    result = serve(tmp_path, {"BASE_MODEL_PATH": "/m", "LFGATE_DATA_DIR": str(tmp_path)},
                   "--port", str(running.port))
    line = one_line(result)
    assert result.returncode == 1
    assert line.startswith(f"lfgate: port {running.port} on 127.0.0.1 is taken by an LF "
                           f"Gate already running there (http://127.0.0.1:{running.port}/): "
                           "open that one, stop it, or choose another port"), line


async def test_the_doctor_checks_the_gateways_port(tmp_path, monkeypatch, held_port,
                                                   running_gateway):
    local = {"BASE_MODEL_PATH": "/m", "LFGATE_DATA_DIR": str(tmp_path / "data")}
    taken = check(await run_doctor(tmp_path / "taken", monkeypatch,
                                   {**local, "GATEWAY_PORT": str(held_port)}),
                  "Configuration", "port")
    assert taken["status"] == "fail"
    assert taken["found"].startswith(f"port {held_port} on 127.0.0.1 is taken by pid "
                                     f"{os.getpid()} ("), taken
    assert f"GATEWAY_PORT={held_port + 1} in .env" in taken["fix"]

    free = free_port()
    free_check = check(await run_doctor(tmp_path / "free", monkeypatch,
                                        {**local, "GATEWAY_PORT": str(free)}),
                       "Configuration", "port")
    assert (free_check["status"], free_check["found"]) == (
        "pass", f"127.0.0.1:{free} is free for `lfgate serve`")

    running = running_gateway
    served = check(await run_doctor(tmp_path / "served", monkeypatch,
                                    {**local, "GATEWAY_PORT": str(running.port)}),
                   "Configuration", "port")
    assert served["status"] == "pass", served
    assert served["found"].startswith(f"127.0.0.1:{running.port} is served by an LF Gate "
                                      "already running there"), served


# --- 6. SSH keys with SSH_HOST empty ------------------------------------------------------


async def test_ssh_keys_without_ssh_host_refuse_to_start_naming_the_typo(tmp_path, monkeypatch):
    dotenv = {"SSH_HSOT": "1.2.3.4", "SSH_USER": "root", "BASE_MODEL_PATH": "/m",
              "LFGATE_DATA_DIR": str(tmp_path / "data")}
    result = serve(tmp_path, dotenv)
    line = one_line(result)
    assert result.returncode == 2
    assert line == ("lfgate: invalid configuration: SSH_HOST is empty while SSH_HSOT, SSH_USER "
                    "are set in .env, so the box would be this machine: SSH_HSOT is not a "
                    "setting: did you mean SSH_HOST?; fix: Rename SSH_HSOT to SSH_HOST in "
                    ".env, or remove the SSH_ keys to serve from this machine.")
    assert not (tmp_path / "data").exists()  # this machine was never served as the box

    report = await run_doctor(tmp_path, monkeypatch, dotenv)
    env_check = check(report, "Configuration", ".env")
    assert env_check["status"] == "fail"
    reason = env_check["found"].replace(str(tmp_path / ".env"), ".env")
    assert f"lfgate: {reason}; fix: {env_check['fix']}" == line  # the same reason and fix
    assert check(report, "Configuration", "values")["status"] == "skip"
    assert "the demo box" not in json.dumps(report)
    assert check(report, "SSH", "connection")["status"] == "skip"


def test_env_examples_ssh_lines_without_a_host_still_serve_this_machine(tmp_path):
    """A copy of .env.example for this machine: SSH_HOST empty, every other SSH_ key at its
    default. That is no sign that a remote box was meant: the gateway starts, locally."""
    ssh_lines = {key: value for key, _, value in (
        line.partition("=") for line in (ROOT / ".env.example").read_text().splitlines()
        if line.startswith("SSH_"))}
    assert ssh_lines["SSH_HOST"] == "" and ssh_lines["SSH_CONNECT_TIMEOUT"]
    gateway = GatewayProcess({k: v for k, v in scripted_env(tmp_path).items()
                              if k != "SSH_HOST"}, tmp_path, dotenv=ssh_lines)
    try:
        health = gateway.http.get("/api/health").json()
        assert (health["status"], health["boxes"][0]["host"]) == ("ok", "local")
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]


# --- 12. A bad value: the key, the value given, the values allowed ------------------------


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("CHAT_MODE", "clii", "Input should be 'cli' or 'script'"),
    ("GATEWAY_PORT", "70000", "allowed: a whole number from 1 to 65535"),
    ("SSH_KEEPALIVE_COUNT_MAX", "three", "allowed: a whole number of 1 or more"),
    ("VLLM_GPU_UTIL", "1.5", "allowed: a number above 0, at most 1, or empty"),
])
async def test_a_bad_value_is_named_with_what_was_given_and_what_is_allowed(
        tmp_path, monkeypatch, key, value, allowed):
    dotenv = {"BASE_MODEL_PATH": "/m", key: value}
    result = serve(tmp_path, dotenv)
    line = one_line(result)
    assert result.returncode == 2
    assert line.startswith(f"lfgate: invalid configuration: {key}: "), line
    assert f"given: {key}={value}" in line and allowed in line, line
    assert f"; fix: Set {key} in .env to " in line and ", or remove it" in line, line

    values = check(await run_doctor(tmp_path, monkeypatch, dotenv), "Configuration", "values")
    assert values["status"] == "fail"
    assert f"lfgate: {values['found']}; fix: {values['fix']}" == line  # the doctor says the same


# --- 7. An unreachable box, a model not on the box: said at start-up ----------------------


def test_a_box_never_reached_is_said_at_start_up_and_health_is_down(tmp_path):
    closed = free_port()  # nothing listens there: the box refuses every connection
    gateway = GatewayProcess({}, tmp_path, dotenv={
        "SSH_HOST": "127.0.0.1", "SSH_PORT": str(closed), "SSH_CONNECT_TIMEOUT": "5",
        "BASE_MODEL_PATH": "/m", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db'}"})
    try:
        # Serving at once, whatever the box does: start-up did not wait for it.
        health = gateway.http.get("/api/health").json()
        assert health["status"] == "down", health
        box = health["boxes"][0]
        assert (box["state"], box["reached"]) in (("down", False), ("reconnecting", False))
        line = wait_for(lambda: next((text for text in gateway.log.read_text().splitlines()
                                      if text.startswith("lfgate: SSH: TCP: ")), None),
                        "the start-up check's line for the box's TCP")
        assert line.startswith(f"lfgate: SSH: TCP: cannot reach 127.0.0.1:{closed}: "), line
        assert "; fix: Is the box running, and SSH_PORT its SSH port" in line, line
        log = gateway.log.read_text()
        assert log.index("lfgate: open http://") < log.index(line)
        assert gateway.http.get("/api/health").json()["boxes"][0]["reached"] is False
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]


def test_a_model_folder_not_on_the_box_is_said_at_start_up(tmp_path):
    gateway = GatewayProcess(scripted_env(tmp_path, base_model_path="/nowhere/qwen"), tmp_path)
    try:
        line = wait_for(lambda: next((text for text in gateway.log.read_text().splitlines()
                                      if text.startswith("lfgate: Models: base: ")), None),
                        "the start-up check's line for BASE_MODEL_PATH")
        assert line == ("lfgate: Models: base: BASE_MODEL_PATH /nowhere/qwen does not exist on "
                        "the box; fix: Set BASE_MODEL_PATH to the model folder on the box (the "
                        "one with config.json), as an absolute path.")
        assert gateway.http.get("/api/health").json()["status"] == "ok"  # the box is there
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]


def test_the_page_says_a_box_was_never_reached_not_that_it_went_away(
        page: Page, make_scripted_gateway) -> None:
    closed = free_port()
    gateway = make_scripted_gateway(env={"SSH_HOST": "127.0.0.1", "SSH_PORT": str(closed),
                                         "SSH_CONNECT_TIMEOUT": "3", "BOX_STATUS_INTERVAL": "0.5"})
    page.goto(gateway.url)
    expect(page.locator(".box-down")).to_contain_text("Box down")
    page.fill("#message", "hello, box?")
    page.keyboard.press("Enter")
    notice = page.locator(".lost-with-box")
    expect(notice).to_contain_text("default could not load: the box has not been reached since "
                                   "the gateway started", timeout=60_000)
    expect(notice).not_to_contain_text("went away")
    # The box's reason is told once: by the failed reply, and the notice beside it does not
    # repeat it (before the reply fails, the notice itself gives it).
    reason = re.compile(rf"cannot reach 127\.0\.0\.1\b.*{closed}")
    expect(page.locator("article[aria-label='Reply'] .notice.error")).to_contain_text(
        reason, timeout=60_000)
    expect(notice).not_to_contain_text(reason)
    assert len(reason.findall(page.locator("body").inner_text())) == 1
    status = page.locator(".model-status .status-text")
    expect(status).to_have_text("Not loaded (the box was never reached)")
    expect(status).to_have_attribute("title", re.compile(rf"cannot reach 127\.0\.0\.1\b.*{closed}"))
    assert page.js_errors == []


# --- 12. The terminal: our lines, no uvicorn chatter, no static files; a clean stop --------


def test_serve_says_where_chats_are_kept_and_logs_no_static_files(tmp_path):
    gateway = GatewayProcess(scripted_env(tmp_path), tmp_path)
    try:
        for path in ("/", "/app.js", "/style.css", "/favicon.svg", "/api/health",
                     "/api/models"):
            assert gateway.http.get(path).status_code == 200, path
        assert gateway.http.post("/api/models/refresh").status_code == 200
        assert gateway.http.get("/api/chats/no-such-chat").status_code == 404
        wait_for(lambda: "/api/chats/no-such-chat" in gateway.log.read_text(),
                 "the 404's access line")
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]  # SIGTERM: exit 0, said so
    lines = gateway.log.read_text().splitlines()
    assert f"lfgate: chats are kept in {tmp_path / 'lfgate.db'}" in lines
    assert lines[-1].startswith(STOPPED)
    access = [line for line in lines if not line.startswith("lfgate: ")]
    assert len(access) == 2, lines  # what changed something, and what failed: nothing else
    assert '"POST /api/models/refresh HTTP/1.1" 200' in access[0]
    assert '"GET /api/chats/no-such-chat HTTP/1.1" 404' in access[1]
    assert gateway.proc.returncode == 0


# --- 9 and 12. `make run`'s demo: its own chats, our lines only, Ctrl-C ends it cleanly ----


def make_checkout(folder: Path) -> Path:
    """This checkout's Makefile, locks, rig and venv, seen from a folder with no .env (the
    repository's own .env, if any, stays out of the test)."""
    folder.mkdir()
    for name in ("Makefile", "requirements", "pyproject.toml", "tests", ".venv"):
        (folder / name).symlink_to(ROOT / name)
    return folder


def lines_of(stream: io.TextIOBase) -> queue.Queue[str | None]:
    """The stream's lines as they come (None at its end), read by a thread."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def outside_make(env: Mapping[str, str]) -> dict[str, str]:
    """`env` as a user's shell has it: run under `make test`, make's own variables would make
    the inner `make run` a sub-make, which says "make[1]: Entering directory"."""
    return {key: value for key, value in env.items()
            if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT",
                           "MAKE_TERMERR")}


@pytest.mark.box
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_make_run_demo_keeps_its_chats_apart_says_little_and_stops_cleanly(tmp_path, stop):
    """Stopped as a terminal does (Ctrl-C: SIGINT to the whole process group) or as a service
    manager or a closing session does (SIGTERM to the group): make itself dies of the signal,
    as it should, but says nothing ("make: *** [Makefile:41: run] Terminated" was the gateway
    dying of SIGTERM), as the gateway exits 0 once it has shut down cleanly."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    checkout = make_checkout(tmp_path / "checkout")
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    # The venv is there already: -o keeps make from reinstalling it from this folder.
    proc = subprocess.Popen(["make", "-o", ".venv/.installed", "run"], cwd=checkout,
                            env={**outside_make(os.environ), "HOME": str(home),
                                 "GATEWAY_PORT": str(port)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal's
    said = lines_of(proc.stderr)
    seen: list[str] = []
    try:
        while not (seen and seen[-1].startswith("lfgate: open http://")):
            line = said.get(timeout=READY_S)
            assert line is not None, f"make run ended: {seen}"
            seen.append(line)
        url = f"http://127.0.0.1:{port}"
        assert seen[-1] == f"lfgate: open {url}/"
        with httpx.Client(base_url=url, timeout=60) as http:
            wait_for(lambda: http.get("/api/health").json()["status"] == "ok", "a local box")
            for path in ("/", "/app.js", "/style.css"):
                assert http.get(path).status_code == 200
    finally:
        os.killpg(proc.pid, stop)  # the whole group, as a terminal signals it
        status = proc.wait(timeout=120)
    while (line := said.get(timeout=30)) is not None:
        seen.append(line)
    assert status in (0, -stop), seen
    assert not any(line.startswith("make: ") for line in seen), seen
    demo = home / ".local" / "share" / "lfgate" / "demo" / "lfgate.db"
    assert f"lfgate: chats are kept in {demo}" in seen
    assert demo.is_file()
    assert seen[0] == "make run: no .env here, so the local demo box serves a tiny random model"
    odd = [line for line in seen[1:] if not TIMED_LINE.match(line)
           and not line.startswith("lfgate: ")]
    assert odd == [], seen  # no warnings, no uvicorn chatter, no line per static file
    assert seen[-1].startswith(STOPPED)
    assert proc.stdout is not None and proc.stdout.read() == ""
