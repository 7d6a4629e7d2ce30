"""`lfgate doctor` over the real sshd and the real LlamaFactory box: a good box passes every
check, and each broken setup, made for real on the test box, fails with its own finding and
fix, and with nothing else failing that the breakage does not explain.

Each test gets its own sshd whose sessions see a HOME of the test's (its ~/.bashrc sets the
interactive PATH, a fake conda lives under it), so no test touches the account's real home.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lfgate.services.boxes.doctor_run import doctor_from_env
from tests.rig.ports import free_port
from tests.rig.sshd import TestSSHD, fingerprint, keygen
from tests.test_config_and_command import FAKE_CONDA_SH

pytestmark = pytest.mark.box
LFGATE = Path(sys.executable).with_name("lfgate")


class DoctorBox:
    """A test sshd whose logins see `home` as HOME, and the .env keys to reach it."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        (self.home / ".bash_profile").write_text(". ~/.bashrc\n")
        (self.home / ".bashrc").write_text("")
        folder = tmp_path / "sshd"
        folder.mkdir()
        self.sshd = TestSSHD(folder, {"HOME": str(self.home), "SHELL": "/bin/bash",
                                      **(env or {})})

    def stop(self) -> None:
        self.sshd.stop()


@pytest.fixture
def doctor_box(tmp_path):
    box = DoctorBox(tmp_path)
    yield box
    box.stop()


@pytest.fixture
def good_env(doctor_box, box_python, tiny, tmp_path) -> dict[str, str]:
    """Every key right: the tiny base, a run of the saves tree as ADAPTER_PATH (trained with
    the qwen template), the tree as ADAPTER_DIRS, a work dir of the test's."""
    work = tmp_path / "box-work"
    work.mkdir()
    saves = Path(tiny["base"]).parent / "saves"
    return {**doctor_box.sshd.settings_env(), "CHAT_MODE": "script",
            "GATEWAY_PORT": str(free_port()),  # free: the port check passes, whatever runs
            "REMOTE_PYTHON": box_python, "REMOTE_WORK_DIR": str(work),
            "BASE_MODEL_PATH": tiny["base"], "ADAPTER_PATH": str(saves / "tiny/lora/sft-a"),
            "ADAPTER_DIRS": str(saves), "TEMPLATE": "qwen"}


def write_env(folder: Path, values: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / ".env"
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


async def doctor(tmp_path: Path, monkeypatch, values: dict[str, str]) -> dict[str, Any]:
    """`lfgate doctor --json`'s code path, in this process, with `values` as ./.env."""
    env = write_env(tmp_path / "gateway", values)
    monkeypatch.chdir(env.parent)
    out = io.StringIO()
    code = await doctor_from_env(env_path=env, as_json=True, out=out)
    result = json.loads(out.getvalue())
    assert code == (0 if result["ok"] else 1)
    return result


def failed(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(f["section"], f["name"]): f for f in result["findings"] if f["status"] == "fail"}


def finding(result: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    return next(f for f in result["findings"] if (f["section"], f["name"]) == (section, name))


def shadow_venv(box_python: str, folder: Path) -> str:
    """The box venv's Python and packages without its bin/ (so no llamafactory-cli beside
    it): a venv made the way `python -m venv` makes one, its site-packages the box's."""
    venv = Path(box_python).parent.parent
    (folder / "bin").mkdir(parents=True)
    shutil.copy(venv / "pyvenv.cfg", folder / "pyvenv.cfg")
    (folder / "lib").symlink_to(venv / "lib")
    python = folder / "bin" / "python"
    python.symlink_to(os.path.realpath(box_python))
    return str(python)


def test_a_good_box_passes_every_check_on_the_terminal(good_env, tmp_path):
    env = write_env(tmp_path / "gateway", good_env)
    done = subprocess.run([str(LFGATE), "doctor"], cwd=env.parent, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert " 0 failed, 0 skipped in " in lines[-1], lines[-1]
    for mark in ("[✓] Configuration: .env:", "[✓] SSH: TCP:", "[✓] SSH: host key:",
                 "[✓] SSH: login:", "[✓] SSH: round trip:", "[✓] Remote shell: work dir:",
                 "[✓] LlamaFactory: import llamafactory: llamafactory 0.9.5",
                 "[✓] Models: base:", "[✓] Models: template: TEMPLATE=qwen, as trained",
                 "[✓] Models: runs: ", "[✓] Smoke chat: chat: script mode: loaded in"):
        assert any(line.startswith(mark) for line in lines), (mark, done.stdout)
    # The slow parts say what they wait for before they start.
    waits = [i for i, line in enumerate(lines) if line.startswith("    … ")]
    smoke = next(i for i, line in enumerate(lines) if "Smoke chat" in line)
    assert len(waits) == 2 and waits[1] == smoke - 1
    assert "[✗]" not in done.stdout
    # The demo tree's runs name the base they were made on, which is on the box (the generator
    # once wrote a temporary folder's path, and every checkpoint carried a false warning).
    assert "not on the box" not in done.stdout


async def test_cli_mode_passes_too(good_env, tmp_path, monkeypatch):
    result = await doctor(tmp_path, monkeypatch, {**good_env, "CHAT_MODE": "cli"})
    assert result["ok"], failed(result)
    assert finding(result, "LlamaFactory", "llamafactory-cli")["status"] == "pass"
    assert "cli mode: loaded in" in finding(result, "Smoke chat", "chat")["found"]


async def test_a_wrong_conda_env_names_the_envs_there_are(good_env, doctor_box, tmp_path,
                                                           monkeypatch):
    hook = doctor_box.home / "miniconda3" / "etc" / "profile.d"
    hook.mkdir(parents=True)
    (hook / "conda.sh").write_text(FAKE_CONDA_SH)
    result = await doctor(tmp_path, monkeypatch, {**good_env, "CONDA_ENV": "lf-typo"})
    assert set(failed(result)) == {("Remote shell", "conda"), ("Smoke chat", "chat")}
    conda = failed(result)[("Remote shell", "conda")]
    assert "has no environment 'lf-typo' (it has: base, lf, qwen)" in conda["found"]
    assert "Set CONDA_ENV to one of those" in conda["fix"]
    # Everything else was still told, by asking the box without conda.
    assert finding(result, "LlamaFactory", "import llamafactory")["status"] == "pass"


async def test_a_cli_only_an_interactive_login_finds_is_found_and_fixed(
        good_env, doctor_box, box_python, tmp_path, monkeypatch):
    venv_bin = Path(box_python).parent
    # As Debian's ~/.bashrc starts, and where `conda init` or a venv's line then goes:
    # bash reads ~/.bashrc for `ssh box command` too, but returns before the PATH line.
    (doctor_box.home / ".bashrc").write_text("case $- in *i*) ;; *) return;; esac\n"
                                             f'export PATH="{venv_bin}:$PATH"\n')
    python = shadow_venv(box_python, tmp_path / "shadow")
    env = {**good_env, "CHAT_MODE": "cli", "REMOTE_PYTHON": python}
    result = await doctor(tmp_path, monkeypatch, env)
    assert set(failed(result)) == {("LlamaFactory", "llamafactory-cli"), ("Smoke chat", "chat")}
    cli = failed(result)[("LlamaFactory", "llamafactory-cli")]
    real_cli = str(venv_bin / "llamafactory-cli")
    assert f"found by an interactive login ({real_cli})" in cli["found"]
    assert cli["fix"].startswith(f"Set LLAMAFACTORY_CLI_PATH={real_cli} in .env")
    path = finding(result, "Remote shell", "PATH")
    assert path["status"] == "warn" and str(venv_bin) in path["found"]
    # The fix it gives works.
    fixed = await doctor(tmp_path, monkeypatch, {**env, "LLAMAFACTORY_CLI_PATH": real_cli})
    assert fixed["ok"], failed(fixed)


async def test_a_missing_work_dir(good_env, tmp_path, monkeypatch):
    where = str(tmp_path / "no-such-dir")
    result = await doctor(tmp_path, monkeypatch, {**good_env, "REMOTE_WORK_DIR": where})
    assert set(failed(result)) == {("Remote shell", "work dir"), ("Smoke chat", "chat")}
    work = failed(result)[("Remote shell", "work dir")]
    assert work["found"] == f"REMOTE_WORK_DIR {where} does not exist on the box"
    assert f"`mkdir -p {where}` on the box" in work["fix"]


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write: a read-only mount as root (mode bits do not stop root),
    mode 0555 otherwise."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                       check=True)
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


async def test_a_read_only_work_dir(good_env, read_only_dir, tmp_path, monkeypatch):
    result = await doctor(tmp_path, monkeypatch,
                          {**good_env, "REMOTE_WORK_DIR": str(read_only_dir)})
    assert set(failed(result)) == {("Remote shell", "work dir")}
    work = failed(result)[("Remote shell", "work dir")]
    assert work["found"] == f"REMOTE_WORK_DIR {read_only_dir} is not writable by the SSH user"
    assert "chown" in work["fix"]


async def test_a_missing_model(good_env, tmp_path, monkeypatch):
    where = str(tmp_path / "models" / "gone")
    result = await doctor(tmp_path, monkeypatch, {**good_env, "BASE_MODEL_PATH": where,
                                                  "ADAPTER_PATH": "", "ADAPTER_DIRS": ""})
    assert set(failed(result)) == {("Models", "base"), ("Smoke chat", "chat")}
    base = failed(result)[("Models", "base")]
    assert base["found"] == f"BASE_MODEL_PATH {where} does not exist on the box"
    assert "Set BASE_MODEL_PATH to the model folder on the box" in base["fix"]


async def test_a_missing_adapter(good_env, tmp_path, monkeypatch):
    where = str(tmp_path / "saves" / "gone")
    result = await doctor(tmp_path, monkeypatch, {**good_env, "ADAPTER_PATH": where})
    assert set(failed(result)) == {("Models", "adapter"), ("Smoke chat", "chat")}
    adapter = failed(result)[("Models", "adapter")]
    assert adapter["found"] == f"ADAPTER_PATH {where} does not exist on the box"
    assert "Set ADAPTER_PATH to a run or checkpoint folder" in adapter["fix"]


async def test_a_template_other_than_the_training_one(good_env, tmp_path, monkeypatch):
    result = await doctor(tmp_path, monkeypatch, {**good_env, "TEMPLATE": "default"})
    assert set(failed(result)) == {("Models", "template")}
    template = failed(result)[("Models", "template")]
    assert "was trained with template 'qwen', but TEMPLATE=default" in template["found"]
    assert template["fix"] == "Set TEMPLATE=qwen in .env."


async def test_an_unreachable_host(good_env, tmp_path, monkeypatch):
    port = free_port()
    result = await doctor(tmp_path, monkeypatch, {**good_env, "SSH_PORT": str(port)})
    assert set(failed(result)) == {("SSH", "TCP")}
    tcp = failed(result)[("SSH", "TCP")]
    assert tcp["found"].startswith(f"cannot reach 127.0.0.1:{port}")
    assert "SSH_PORT" in tcp["fix"]
    skipped = {(f["section"], f["name"]) for f in result["findings"] if f["status"] == "skip"}
    assert {("SSH", "login"), ("Remote shell", "checks"), ("Smoke chat", "chat")} <= skipped


async def test_a_changed_host_key(good_env, doctor_box, tmp_path, monkeypatch):
    other = tmp_path / "known_hosts"
    key_type, key = keygen(tmp_path / "other").split()[:2]
    other.write_text(f"[127.0.0.1]:{doctor_box.sshd.port} {key_type} {key}\n")
    result = await doctor(tmp_path, monkeypatch, {**good_env, "SSH_KNOWN_HOSTS": str(other)})
    assert set(failed(result)) == {("SSH", "host key")}
    host_key = failed(result)[("SSH", "host key")]
    assert fingerprint(doctor_box.sshd.host_key.with_suffix(".pub")) in host_key["found"]
    assert "ssh-keyscan" in host_key["fix"] and "do not connect" in host_key["fix"]


async def test_a_wrong_key(good_env, tmp_path, monkeypatch):
    keygen(tmp_path / "stranger")
    result = await doctor(tmp_path, monkeypatch,
                          {**good_env, "SSH_KEY_PATH": str(tmp_path / "stranger")})
    assert set(failed(result)) == {("SSH", "login")}
    login = failed(result)[("SSH", "login")]
    assert str(tmp_path / "stranger") in login["found"]
    assert "ssh-copy-id" in login["fix"] and "authorized_keys" in login["fix"]


async def test_bad_configuration_is_told_without_a_box(tmp_path, monkeypatch):
    result = await doctor(tmp_path, monkeypatch, {"SSH_HOTS": "x", "SSH_PORT": "abc",
                                                  "BASE_MODEL_PATH": "/m"})
    # SSH keys without SSH_HOST: `lfgate serve` would refuse them, the .env check says why.
    assert set(failed(result)) == {("Configuration", ".env"), ("Configuration", "values")}
    env = failed(result)[("Configuration", ".env")]
    assert "SSH_HOST is empty while SSH_HOTS, SSH_PORT are set" in env["found"]
    assert env["fix"].startswith("Rename SSH_HOTS to SSH_HOST in .env")
    values = failed(result)[("Configuration", "values")]
    assert "SSH_PORT" in values["found"] and "given: SSH_PORT=abc" in values["found"]
    assert values["fix"] == "Set SSH_PORT in .env to a whole number from 1 to 65535, or remove it."
    unknown = finding(result, "Configuration", "unknown key")
    assert unknown["status"] == "warn" and "did you mean SSH_HOST?" in unknown["found"]
    assert all(f["status"] == "skip" for f in result["findings"]
               if f["section"] not in ("Configuration",))


def test_the_gateway_serves_the_same_report(good_env, tmp_path):
    """GET /api/doctor and its SSE twin, from a running gateway over the same sshd: the
    smoke chat goes through the gateway's own registry (its model stays loaded)."""
    from tests.gateway_process import GatewayProcess, sse_events

    folder = tmp_path / "gw"
    folder.mkdir()
    gateway = GatewayProcess({}, folder, dotenv={
        **good_env, "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'lfgate.db'}"})
    try:
        whole = gateway.http.get("/api/doctor").json()
        assert whole["ok"] and whole["summary"]["fail"] == 0, failed(whole)
        assert " 0 failed, " in whole["line"]
        assert finding(whole, "Configuration", ".env")["found"].startswith(
            f"{folder / '.env'} parses")
        assert gateway.http.get("/api/models/default/status").json()["status"] == "ready"
        with gateway.http.stream("GET", "/api/doctor/stream") as response:
            events = [(name, data) for name, data, _ in sse_events(response)]
        names = [name for name, _ in events]
        assert names[-1] == "report" and names.count("waiting") == 2
        assert [d for n, d in events if n == "finding"] == events[-1][1]["findings"]
        # Seen once under heavy load (four workers on two cores): the stream's run stopped at
        # "Remote shell: python". Its own failures come first, so such a run says why.
        assert events[-1][1]["ok"], failed(events[-1][1])
        assert {(f["section"], f["name"]) for f in events[-1][1]["findings"]} == \
            {(f["section"], f["name"]) for f in whole["findings"]}
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]
