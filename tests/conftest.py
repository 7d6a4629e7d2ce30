"""Shared fixtures: the real box (LlamaFactory in its own venv) and the tiny model it serves."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RIG = ROOT / "tests" / "rig"


def _rig(script: str, *args: str) -> str:
    result = subprocess.run(
        ["bash", str(RIG / script), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{script} failed:\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def box_python() -> str:
    """The box's Python: a venv with the real LlamaFactory, built once and cached."""
    return os.environ.get("LFGATE_BOX_PYTHON") or _rig("box_env.sh")


@pytest.fixture(scope="session")
def tiny(box_python: str) -> dict[str, str]:
    """Paths of the tiny base model, its adapters and a base the adapters do not fit."""
    folder = Path(_rig("tiny_model.sh", box_python))
    info = json.loads((folder / "tiny.json").read_text())
    paths = {name: str(folder / name) for name in ("base", "adapter", "adapter2", "other_base")}
    return {**paths, "template": info["template"]}


@pytest.fixture(scope="session")
def sshd(tmp_path_factory, box_python):
    """A real OpenSSH server on 127.0.0.1 whose sessions load the test spy."""
    from tests.rig.sshd import TestSSHD
    from tests.wrapper_process import SPY_DIR

    folder = tmp_path_factory.mktemp("sshd")
    spy = folder / "spy.jsonl"
    server = TestSSHD(folder, {"PYTHONPATH": str(SPY_DIR), "LFGATE_TEST_SPY": str(spy)})
    server.spy = spy
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL (Debian's package); skipped, with the reason, where it is missing."""
    import tempfile

    from tests.rig.postgres import TestPostgres, find_bindir

    url = os.environ.get("LFGATE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package `postgresql`); "
                    "tests/rig/system_deps.sh installs it")
    server = TestPostgres(Path(tempfile.mkdtemp(prefix="lfgate-pg-")), bindir)
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path):
    """A fresh, empty database of each kind for one test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'lfgate.db'}"
        return
    import uuid

    import asyncpg

    server_url = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = server_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    yield server_url.rsplit("/", 1)[0] + f"/{name}"
