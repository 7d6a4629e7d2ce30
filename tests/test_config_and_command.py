"""Settings validation, the `lfgate` command's start-up errors, and the remote command string."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from lfgate.box.command import explain_start_failure, wrapper_command
from lfgate.config import Settings, SettingsError, load_settings
from tests.gateway_process import LFGATE


def test_defaults_bind_to_loopback_and_use_script_mode():
    settings = load_settings(base_model_path="/m")
    assert settings.gateway_host == "127.0.0.1"
    assert settings.chat_mode == "script"
    assert settings.is_local and settings.host_label == "local"


@pytest.mark.parametrize("overrides, key", [
    ({"chat_mode": "gui"}, "CHAT_MODE"),
    ({"ssh_port": "ssh"}, "SSH_PORT"),
    ({"gateway_port": 70000}, "GATEWAY_PORT"),
    ({"chat_timeout": -1}, "CHAT_TIMEOUT"),
    ({"ssh_key_path": "/nonexistent/key"}, "SSH_KEY_PATH"),
])
def test_a_bad_value_names_its_key(overrides, key):
    with pytest.raises(SettingsError) as error:
        load_settings(base_model_path="/m", **overrides)
    assert key in str(error.value)


def test_env_file_in_the_current_directory_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("CHAT_MODE=CLI\nBASE_MODEL_PATH=/models/q\nSSH_HOST=gpu\n"
                                   "SSH_USER=me\nSSH_PORT=2222\n")
    monkeypatch.chdir(tmp_path)
    for key in ("CHAT_MODE", "BASE_MODEL_PATH", "SSH_HOST", "SSH_USER", "SSH_PORT"):
        monkeypatch.delenv(key, raising=False)
    settings = load_settings()
    assert (settings.chat_mode, settings.host_label) == ("cli", "me@gpu:2222")


def test_lfgate_serve_stops_with_one_clear_line(tmp_path):
    (tmp_path / ".env").write_text("CHAT_MODE=gui\nBASE_MODEL_PATH=/m\n")
    result = subprocess.run([LFGATE, "serve"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "CHAT_MODE" in result.stderr


def test_lfgate_serve_needs_a_model(tmp_path):
    result = subprocess.run([LFGATE, "serve"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "BASE_MODEL_PATH" in result.stderr


def test_remote_command_quotes_every_value():
    settings = load_settings(
        base_model_path="/m", remote_work_dir="~/runs/it's here; rm -rf /",
        conda_env="lf env$(reboot)", remote_python="/opt/py 3/bin/python")
    command = wrapper_command(settings, "/home/u/.cache/lfgate/wrappers/abc/chat_inference.py")
    words = shlex.split(command)
    assert "rm" not in words and "$(reboot)" not in command.replace("'lf env$(reboot)'", "")
    assert "'lf env$(reboot)'" in command
    assert command.startswith('cd "$HOME"/\'runs/it\'"\'"\'s here; rm -rf /\'')
    assert command.endswith("exec '/opt/py 3/bin/python' "
                            "/home/u/.cache/lfgate/wrappers/abc/chat_inference.py --serve")


def test_remote_command_runs_where_it_says(tmp_path):
    """The string really does what it says in sh: cd into an odd folder, then exec."""
    odd = tmp_path / "a dir; with 'quotes' $HOME"
    odd.mkdir()
    python = tmp_path / "fake python"
    python.write_text('#!/bin/sh\necho "$PWD|$*"\n')
    python.chmod(0o755)
    settings = load_settings(base_model_path="/m", remote_work_dir=str(odd),
                             remote_python=str(python))
    out = subprocess.run(["/bin/sh", "-c", wrapper_command(settings, "x y.py")],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"{odd}|x y.py --serve"]


def test_an_unknown_key_in_env_is_a_warning_naming_the_closest(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("TEMPLTE=qwen\nBASE_MODEL_PATH=/m\nchat_mode=cli\n"
                                   "WHATEVER_THIS_IS=1\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.chat_mode == "cli"  # keys are case-insensitive, so this one is known
    assert settings.warnings == [
        "TEMPLTE in .env is not a setting; did you mean TEMPLATE?",
        "WHATEVER_THIS_IS in .env is not a setting (see .env.example for the keys)"]


def test_lfgate_serve_says_so_and_health_shows_it(tmp_path):
    """Over the real `lfgate serve`: the warning at start-up and in /api/health."""
    from tests.gateway_process import GatewayProcess
    from tests.ui_rig import scripted_env

    gateway = GatewayProcess(scripted_env(tmp_path), tmp_path, dotenv={"TEMPLTE": "qwen"})
    try:
        health = gateway.http.get("/api/health").json()
        assert health["warnings"] == ["TEMPLTE in .env is not a setting; did you mean TEMPLATE?"]
        assert health["remote"]["host"] == "local"
        assert "lfgate: warning: TEMPLTE in .env is not a setting; did you mean TEMPLATE?" \
            in gateway.log.read_text()
    finally:
        gateway.stop()


FAKE_CONDA_SH = """conda() {
  case "$1 $2" in
    "activate lf") export LFGATE_FAKE_CONDA_ENV=lf ;;
    "env list") printf '# conda environments:\\nbase * /x\\nlf /x/envs/lf\\nqwen /x/q\\n' ;;
    *) echo "EnvironmentNameNotFound: Could not find conda environment: $2" >&2; return 1 ;;
  esac
}
"""


def _run_with_conda(tmp_path, conda_env: str, *, install: str | None
                    ) -> tuple[subprocess.CompletedProcess[str], Settings]:
    """The real command in sh, as a box whose HOME is tmp_path/home (conda under `install`)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    if install:
        hook = home / install / "etc" / "profile.d"
        hook.mkdir(parents=True)
        (hook / "conda.sh").write_text(FAKE_CONDA_SH)
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\necho "env=$LFGATE_FAKE_CONDA_ENV"\n')
    python.chmod(0o755)
    settings = load_settings(base_model_path="/m", conda_env=conda_env, remote_python=str(python))
    return subprocess.run(["/bin/sh", "-c", wrapper_command(settings, "w.py")],
                          capture_output=True, text=True, timeout=30,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"}), settings


def test_conda_is_found_where_a_non_interactive_login_cannot_see_it(tmp_path):
    result, _ = _run_with_conda(tmp_path, "lf", install="miniforge3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "env=lf"


def test_no_conda_on_the_box_says_so_and_how_to_fix_it(tmp_path):
    result, settings = _run_with_conda(tmp_path, "lf", install=None)
    assert result.returncode == 97
    error = explain_start_failure(settings, result.stderr)
    assert error is not None and error.code == "conda_not_found"
    assert "not on the PATH that a non-interactive SSH login sees" in error.message
    assert "REMOTE_PYTHON" in error.hint and "clear CONDA_ENV" in error.hint


def test_a_missing_conda_env_names_the_ones_there_are(tmp_path):
    result, settings = _run_with_conda(tmp_path, "nope", install="miniconda3")
    assert result.returncode == 98
    error = explain_start_failure(settings, result.stderr)
    assert error is not None and error.code == "conda_env_not_found"
    root = tmp_path / "home" / "miniconda3"
    assert error.message == f"conda at {root} has no environment 'nope' (it has: base, lf, qwen)"
    assert f"{root}/envs/NAME/bin/python" in error.hint
