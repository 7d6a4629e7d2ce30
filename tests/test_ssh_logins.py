"""The logins rented boxes hand out, against the real OpenSSH sshd (tests/rig/sshd.py): a
password (password auth, and keyboard-interactive through PAM), an encrypted key with its
passphrase, an SSH agent with no SSH_KEY_PATH, and a ProxyJump chain from an ssh config
file. Neither secret may show anywhere: logs, error messages, API responses, process
listings (command lines and environments, here and on the box side).

Password logins use a test account of their own (`password_account`: made if missing, a new
random password each run); the tests run as root, as CI does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from lfgate.box.errors import BoxAuthFailed, HostKeyRejected, KeyUnreadable
from lfgate.box.ssh_box import SSHBox
from lfgate.box.wrapper_files import STATUS
from lfgate.config import load_settings
from lfgate.services.boxes.doctor import DoctorContext, run_doctor
from tests.gateway_process import GatewayProcess
from tests.rig.sshd import PASSWORD_USER, TestSSHD, fingerprint, keygen, password_account

# New each run, so no other test session's processes can hold it by chance.
PASSPHRASE = f"Pp-{secrets.token_urlsafe(18)}"


@pytest.fixture(scope="module")
def password():
    """The test account's password for this run (a fresh random one)."""
    with password_account() as secret:
        yield secret


def _server(tmp_path_factory, name: str, **options) -> TestSSHD:
    return TestSSHD(tmp_path_factory.mktemp(name), **options)


@pytest.fixture(scope="module")
def password_sshd(tmp_path_factory, password):
    """PasswordAuthentication (the shadow password, UsePAM no) for the test account."""
    server = _server(tmp_path_factory, "sshd-pw", user=PASSWORD_USER, password_auth=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kbd_sshd(tmp_path_factory, password):
    """Keyboard-interactive only (through PAM, as Linux boxes do it) for the test account."""
    server = _server(tmp_path_factory, "sshd-kbd", user=PASSWORD_USER, kbd_interactive=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def locked_key_sshd(tmp_path_factory):
    """Key logins as this account, with a client key encrypted by ssh-keygen."""
    server = _server(tmp_path_factory, "sshd-enc", client_passphrase=PASSPHRASE)
    yield server
    server.stop()


def box_settings(server: TestSSHD, *, key: bool = True, **overrides):
    env = {k.lower(): v for k, v in server.settings_env().items()}
    if not key:
        env.pop("ssh_key_path")
    return load_settings(base_model_path="/models/m", **{**env, **overrides})


def password_box(server: TestSSHD, secret: str) -> SSHBox:
    return SSHBox(box_settings(server, key=False, ssh_password=secret))


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, "a secret leaked"


@contextlib.asynccontextmanager
async def connected(box: SSHBox):
    try:
        await box.connect()
        yield box
    finally:
        await box.close()


def wait_for(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


# --- Passwords -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["password", "keyboard-interactive"])
async def test_a_password_logs_in_and_runs_a_box_program(method, password, request, caplog):
    server = request.getfixturevalue("password_sshd" if method == "password" else "kbd_sshd")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    async with connected(password_box(server, password)) as box:
        status = await box.run_program(STATUS, {}, 30)
        assert len(status["load_avg"]) == 3
        assert box.login_method == method and box.password_login
        assert await box.placed_folder() == f"{pwd.getpwnam(PASSWORD_USER).pw_dir}/" \
            f".cache/lfgate/wrappers/{box.files.digest}", "it is the test account's box"
    how = "keyboard-interactive/pam" if method == "keyboard-interactive" else "password"
    assert f"Accepted {how} for {PASSWORD_USER}" in server.log.read_text()
    assert "Trying" in caplog.text, "asyncssh's own log lines were captured"
    assert_hidden(caplog.text, password)
    assert_hidden(server.log.read_text(), password)


@pytest.mark.parametrize("method", ["password", "keyboard-interactive"])
async def test_a_wrong_password_is_refused_naming_the_method_not_the_password(
        method, password, request, caplog):
    server = request.getfixturevalue("password_sshd" if method == "password" else "kbd_sshd")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    wrong = f"Wrong-{password[::-1]}"
    box = password_box(server, wrong)
    with pytest.raises(BoxAuthFailed) as refused:
        await box.connect()
    error = refused.value
    assert not isinstance(error, KeyUnreadable)
    assert "password (SSH_PASSWORD)" in error.message and "refused the login" in error.message
    assert "SSH_PASSWORD" in error.hint and "key is safer" in error.hint
    texts = [str(error), error.message, error.hint, json.dumps(error.as_dict()),
             box.status().error or "", repr(box.settings), str(box.settings.model_dump()),
             box.settings.model_dump_json(), box.settings.host_label, caplog.text,
             *(str(record.args) for record in caplog.records)]
    assert "Auth failed for user" in caplog.text, "asyncssh's own log lines were captured"
    for text in texts:
        assert_hidden(text, wrong, password)
    assert not box.connected


async def test_with_a_key_and_a_password_the_key_logs_in(locked_key_sshd):
    """asyncssh tries keys before passwords (its preferred_auth order): a password set for a
    box that takes the key is never used, and the doctor says the key logged in."""
    settings = box_settings(locked_key_sshd, ssh_key_passphrase=PASSPHRASE,
                            ssh_password="never sent")
    async with connected(SSHBox(settings)) as box:
        assert box.login_method == "publickey" and not box.password_login
        assert box.login_description() == f"key {locked_key_sshd.client_key}"


# --- Encrypted keys ------------------------------------------------------------------------


async def test_an_encrypted_key_with_its_passphrase(locked_key_sshd, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    box = SSHBox(box_settings(locked_key_sshd, ssh_key_passphrase=PASSPHRASE))
    async with connected(box):
        assert (await box.run_program(STATUS, {}, 30))["load_avg"]
        assert box.login_method == "publickey"
    assert "Accepted publickey" in locked_key_sshd.log.read_text()
    assert_hidden(caplog.text, PASSPHRASE)


@pytest.mark.parametrize("given", ["", "not the passphrase"])
async def test_an_encrypted_key_without_its_passphrase_says_so(locked_key_sshd, given, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    tries = locked_key_sshd.log.read_text().count("Connection from")
    box = SSHBox(box_settings(locked_key_sshd, ssh_key_passphrase=given))
    with pytest.raises(KeyUnreadable) as refused:
        await box.connect()
    error = refused.value
    assert isinstance(error, BoxAuthFailed) and error.code == "auth_failed"
    assert str(locked_key_sshd.client_key) in error.message
    if given:
        assert "SSH_KEY_PASSPHRASE does not decrypt the key" in error.message
        assert "ssh-keygen -y -f" in error.hint
    else:
        assert "is encrypted and SSH_KEY_PASSPHRASE is not set" in error.message
        assert "Set SSH_KEY_PASSPHRASE" in error.hint
    assert locked_key_sshd.log.read_text().count("Connection from") == tries, "nothing sent"
    for text in (str(error), json.dumps(error.as_dict()), box.status().error or "",
                 repr(box.settings), caplog.text):
        assert_hidden(text, PASSPHRASE, *([given] if given else []))


# --- An agent ------------------------------------------------------------------------------


@pytest.fixture
def agent(tmp_path, monkeypatch):
    """A real ssh-agent on a socket of the test's, as SSH_AUTH_SOCK; stopped afterwards."""
    socket = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("ssh-agent's socket", lambda: socket.exists() or proc.poll() is not None)
        assert proc.poll() is None, "ssh-agent exited"
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        yield socket
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_the_agent_logs_in_with_no_key_path(tmp_path, agent, monkeypatch):
    folder = tmp_path / "sshd"
    folder.mkdir()
    server = TestSSHD(folder)
    try:
        settings = box_settings(server, key=False)
        # An agent without the key: refused, and the message says what was tried.
        with pytest.raises(BoxAuthFailed) as refused:
            await SSHBox(settings).connect()
        assert "the agent's keys (SSH_AUTH_SOCK)" in refused.value.message
        assert "ssh-add -l" in refused.value.hint
        await asyncio.to_thread(subprocess.run, ["ssh-add", "-q", str(server.client_key)],
                                check=True, env={**os.environ, "SSH_AUTH_SOCK": str(agent)})
        async with connected(SSHBox(settings)) as box:
            assert (await box.run_program(STATUS, {}, 30))["load_avg"]
            assert box.login_method == "publickey"
            assert box.login_description() == "a key of the agent (SSH_AUTH_SOCK)"
        # Without the agent nothing is left to try, and the message says that too.
        monkeypatch.delenv("SSH_AUTH_SOCK")
        with pytest.raises(BoxAuthFailed) as nothing:
            await SSHBox(settings).connect()
        assert "no key, agent or password" in nothing.value.message
    finally:
        server.stop()


# --- ProxyJump -----------------------------------------------------------------------------


def two_sshd(folder_of) -> list[TestSSHD]:
    """Two sshd: a jump host and the box behind it (both on 127.0.0.1 here)."""
    return [TestSSHD(folder_of(name)) for name in ("jump", "box")]


@pytest.fixture
def own_jump_pair(tmp_path):
    """A jump host and a box of the test's own, for a test that changes one of them."""
    def folder_of(name: str) -> Path:
        (tmp_path / name).mkdir()
        return tmp_path / name

    servers = two_sshd(folder_of)
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def shared_jump_pair(tmp_path_factory):
    servers = two_sshd(tmp_path_factory.mktemp)
    yield servers
    for server in servers:
        server.stop()


def sessions(server: TestSSHD) -> list[str]:
    """The per-connection sshd processes of `server` (its listener's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1]
                                            .split()[1]) == server.proc.pid:
                found.append(entry.name)
        except OSError:  # it ended meanwhile
            continue
    return found


@pytest.fixture
def jump_pair(shared_jump_pair):
    """A jump host and the box behind it, shared by the module's tests that change neither:
    each starts once the sessions before it have ended (so their last log lines are
    written), and reads the logs from there on (`new_log`)."""
    for server in shared_jump_pair:
        wait_for("the sessions of the tests before to end", lambda s=server: not sessions(s))
        server.log_start = server.log.stat().st_size
    return shared_jump_pair


def new_log(server: TestSSHD) -> str:
    """What the server logged since the test started (all of it, for a server of its own)."""
    return server.log.read_bytes()[getattr(server, "log_start", 0):].decode(errors="replace")


def jump_config(tmp_path: Path, jump: TestSSHD, box: TestSSHD, inline: bool) -> Path:
    """`Host mybox` behind the jump host: by its alias (its own Host block with port, user
    and IdentityFile), or as user@host:port with the key in a Host block of that address."""
    config = tmp_path / "ssh_config"
    if inline:
        hop = f"{jump.user}@127.0.0.1:{jump.port}"
        jump_block = f"Host 127.0.0.1\n  IdentityFile {jump.client_key}\n"
    else:
        hop = "lfgate-jump"
        jump_block = (f"Host lfgate-jump\n  HostName 127.0.0.1\n  Port {jump.port}\n"
                      f"  User {jump.user}\n  IdentityFile {jump.client_key}\n")
    config.write_text(f"Host mybox\n  HostName 127.0.0.1\n  Port {box.port}\n"
                      f"  User {box.user}\n  ProxyJump {hop}\n\n{jump_block}")
    return config


def jump_settings(tmp_path: Path, jump: TestSSHD, box: TestSSHD, inline: bool = False,
                  known: str | None = None, **overrides):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known if known is not None else
                           jump.known_hosts.read_text() + box.known_hosts.read_text())
    return load_settings(base_model_path="/models/m", ssh_host="mybox",
                         ssh_config_path=str(jump_config(tmp_path, jump, box, inline)),
                         ssh_known_hosts=str(known_hosts), ssh_key_path=str(box.client_key),
                         **overrides)


@pytest.mark.parametrize("inline", [False, True], ids=["alias", "user@host:port"])
async def test_a_proxyjump_chain_from_the_ssh_config(tmp_path, jump_pair, inline):
    jump, target = jump_pair
    box = SSHBox(jump_settings(tmp_path, jump, target, inline))
    async with connected(box):
        assert (await box.run_program(STATUS, {}, 30))["load_avg"]
        assert await box.round_trip_s() > 0
    accepted = f"Accepted publickey for {jump.user}"
    assert new_log(jump).count(accepted) == 1, "the jump host logged us in once"
    assert new_log(target).count(accepted) == 1
    # Closing the box closes the hop too.
    wait_for("the jump host's session to end",
             lambda: f"Disconnected from user {jump.user}" in new_log(jump))


@pytest.mark.parametrize("unknown", ["jump", "box"])
async def test_an_unknown_host_key_on_the_way_is_refused_by_name(tmp_path, jump_pair, unknown):
    jump, target = jump_pair
    known = target if unknown == "jump" else jump  # the one whose key known_hosts holds
    box = SSHBox(jump_settings(tmp_path, jump, target, known=known.known_hosts.read_text()))
    with pytest.raises(HostKeyRejected) as refused:
        await box.connect()
    stranger = jump if unknown == "jump" else target
    assert fingerprint(stranger.host_key.with_suffix(".pub")) in refused.value.message
    assert f"ssh-keyscan -p {stranger.port} 127.0.0.1" in refused.value.hint
    assert ("the jump host lfgate-jump" in refused.value.message) == (unknown == "jump")
    assert "Accepted" not in new_log(target)
    assert not box.connected


async def test_a_jump_host_that_refuses_our_key_is_named(tmp_path, own_jump_pair):
    jump, target = own_jump_pair
    keygen(tmp_path / "stranger")
    (jump.folder / "authorized_keys").write_text(
        (tmp_path / "stranger.pub").read_text())  # the jump host no longer takes our key
    with pytest.raises(BoxAuthFailed) as refused:
        await SSHBox(jump_settings(tmp_path, jump, target, ssh_password="box-only")).connect()
    assert refused.value.message == "the jump host lfgate-jump refused the login"
    assert "SSH_PASSWORD are the box's" in refused.value.hint
    # The box's password is the box's: never offered to a jump host.
    hop = SSHBox._jump_options(jump_settings(tmp_path, jump, target, ssh_password="x"),
                               "lfgate-jump")
    assert hop.password is None and hop.port == jump.port and hop.username == jump.user


# --- The doctor ------------------------------------------------------------------------------


async def ssh_findings(settings, tmp_path: Path) -> dict:
    """The doctor's SSH section for these settings, by check name."""
    box = SSHBox(settings)
    findings = {}
    try:
        async with contextlib.aclosing(run_doctor(
                DoctorContext(settings, None, tmp_path / ".env", box))) as run:
            async for item in run:
                if getattr(item, "section", "") == "SSH" and hasattr(item, "status"):
                    findings[item.name] = item
                if "round trip" in findings:
                    break
    finally:
        await box.close()
    return findings


async def test_the_doctor_says_which_login_worked_and_that_a_key_is_safer(
        password_sshd, password, tmp_path):
    settings = box_settings(password_sshd, key=False, ssh_password=password)
    findings = await ssh_findings(settings, tmp_path)
    login = findings["login"]
    assert login.status == "pass", login
    assert login.found.startswith(f"logged in as {PASSWORD_USER} with the password "
                                  "(SSH_PASSWORD, password auth); a key is safer than a "
                                  f"password: `ssh-copy-id -p {password_sshd.port} ")
    assert all(password not in f"{f.found} {f.fix}" for f in findings.values())


async def test_the_doctor_follows_the_ssh_config_to_a_box_behind_a_jump_host(
        tmp_path, jump_pair):
    jump, target = jump_pair
    findings = await ssh_findings(jump_settings(tmp_path, jump, target), tmp_path)
    statuses = {name: f.status for name, f in findings.items()}
    # Timed (a median of 3 commands over both hops): a loaded test machine made it a warning,
    # so either is the link's answer here; every other check must pass.
    assert statuses.pop("round trip") in ("pass", "warn"), findings
    assert statuses == dict.fromkeys(("name", "TCP", "host key", "login"), "pass"), findings
    assert findings["TCP"].found.startswith(
        f"127.0.0.1:{jump.port} (the first ProxyJump host of mybox, behind it 127.0.0.1) "
        "answers (SSH-2.0-OpenSSH"), findings["TCP"]


async def test_the_doctor_tells_a_locked_key_from_a_refused_one(locked_key_sshd, tmp_path):
    findings = await ssh_findings(box_settings(locked_key_sshd), tmp_path)
    assert findings["login"].status == "fail"
    assert "is encrypted and SSH_KEY_PASSPHRASE is not set" in findings["login"].found
    assert "Set SSH_KEY_PASSPHRASE" in findings["login"].fix
    assert findings["host key"].status == "skip", "nothing was sent: no host key seen"


# --- Nothing shows the secret: API responses, logs, process listings ------------------------


def _processes() -> list[Path]:
    return [entry for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended, or a kernel thread
        return b""


@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
def test_no_secret_in_api_responses_logs_or_process_listings(
        right, password, password_sshd, tmp_path):
    """A real gateway on the password box (and an encrypted key's passphrase in its .env):
    every API body, its log, and every process's command line and environment, here and on
    the box side, are free of both secrets."""
    secret = password if right else f"Wrong-{password[::-1]}"
    secrets = (password, secret, PASSPHRASE)
    folder = tmp_path / "gateway"
    folder.mkdir()
    env = {k: v for k, v in password_sshd.settings_env().items() if k != "SSH_KEY_PATH"}
    gateway = GatewayProcess({}, folder, dotenv={
        **env, "SSH_PASSWORD": secret, "SSH_KEY_PASSPHRASE": PASSPHRASE,
        "BASE_MODEL_PATH": "/nonexistent/model", "CHAT_MODE": "script",
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'lfgate.db'}"})
    bodies = []
    try:
        bodies.append(gateway.http.get("/api/models").text)
        with gateway.http.stream("POST", "/api/chat", json={"message": "hi"}) as reply:
            bodies.append(reply.read().decode())  # no model there: it fails, as a chat can
        # On the right password the wrapper ran on the box (and found no LlamaFactory there).
        assert ('"code": "llamafactory_missing"' if right else '"code": "auth_failed"') \
            in bodies[-1], bodies[-1]
        bodies.append(gateway.http.get("/api/doctor").text)

        def tried() -> dict | None:
            body = gateway.http.get("/api/health").json()
            return body if body["remote"]["connected"] or body["remote"]["error"] else None

        health = wait_for("the gateway to try the box", tried)
        bodies.append(json.dumps(health))
        doctor = json.loads(bodies[2])
        login = next(f for f in doctor["findings"] if f["name"] == "login")
        if right:
            assert health["remote"]["connected"], health
            assert login["status"] == "pass" and "the password (SSH_PASSWORD" in login["found"]
            # While it is connected: the box side runs as the test account.
            box_uid = pwd.getpwnam(PASSWORD_USER).pw_uid
            on_box = [p for p in _processes() if (p / "status").exists()
                      and os.stat(p).st_uid == box_uid]
            assert on_box, "the gateway's sshd session on the box side"
        else:
            assert "refused the login; tried the password (SSH_PASSWORD)" in \
                health["remote"]["error"], health
            assert login["status"] == "fail" and "SSH_PASSWORD" in login["fix"]
            on_box = []
        listings = [_read(p / "cmdline") for p in _processes()]
        environments = [_read(p / "environ") for p in _processes()]
        assert any(b"lfgate" in line for line in listings), "the listing was read"
        for text in [*bodies, *(x.decode(errors="replace") for x in listings + environments)]:
            assert_hidden(text, *secrets)
        for process in on_box:  # also named: the box side's own command lines and environ
            assert_hidden(_read(process / "environ").decode(errors="replace"), *secrets)
            assert_hidden(_read(process / "cmdline").decode(errors="replace"), *secrets)
    finally:
        gateway.stop()
    assert_hidden(gateway.log.read_text(), *secrets)
    assert_hidden(password_sshd.log.read_text(), *secrets)


def test_settings_never_show_the_secrets():
    settings = load_settings(base_model_path="/m", ssh_host="gpu-box", ssh_user="root",
                             ssh_password="Pw-unit-secret", ssh_key_passphrase="Pp-unit-secret")
    assert settings.ssh_password.get_secret_value() == "Pw-unit-secret"
    for text in (repr(settings), str(settings), settings.host_label,
                 settings.model_dump_json(), str(settings.model_dump())):
        assert_hidden(text, "Pw-unit-secret", "Pp-unit-secret")
    assert settings.host_label == "root@gpu-box"
