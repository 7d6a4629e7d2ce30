"""The box probe (remote/box_probe.py, the facts `lfgate doctor` will judge), run as the box
runs it: a separate Python reading its job on stdin. A `llamafactory-cli` that only an
interactive login finds (put on PATH by ~/.bashrc, the classic "command not found over SSH")
shows as found there and not here; missing and present model folders are told apart, and an
adapter names its base."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.rig.saves_tree import make_saves

PROBE = Path(__file__).resolve().parents[1] / "remote" / "box_probe.py"


def run_probe(job: dict, home: Path) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/bash", "LANG": "C.UTF-8"}
    done = subprocess.run([sys.executable, str(PROBE)], input=json.dumps(job), text=True,
                          capture_output=True, env=env, cwd=home, timeout=120, check=True)
    return json.loads(done.stdout)


def test_the_probe_tells_the_interactive_path_from_its_own(tmp_path):
    home = tmp_path / "home"
    tools = home / "venv" / "bin"
    tools.mkdir(parents=True)
    cli = tools / "llamafactory-cli"
    cli.write_text("#!/bin/sh\necho 0.9.5\n")
    cli.chmod(0o755)
    (home / ".bashrc").write_text(f'export PATH="{tools}:$PATH"\n')
    (home / ".bash_profile").write_text(". ~/.bashrc\n")
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    (base / "config.json").write_text('{"model_type": "qwen2"}')
    saves = tmp_path / "saves"
    adapter = Path(next(iter(make_saves(saves, str(base)).values())))
    facts = run_probe({"mode": "cli", "base_model_path": str(base),
                       "adapter_paths": [str(adapter), str(tmp_path / "gone")],
                       "adapter_dirs": [str(saves), str(tmp_path / "nowhere")]}, home)
    assert facts["cli"] == {"name": "llamafactory-cli", "here": None,
                            "interactive": str(cli)}
    assert str(tools) in facts["interactive"]["path"] and str(tools) not in facts["path"]
    assert facts["python"]["version"] == sys.version.split()[0]
    assert facts["cwd"]["writable"] and facts["cwd"]["free_bytes"] > 0
    assert facts["base"]["config.json"]["model_type"] == "qwen2"
    found, gone = facts["adapters"]
    assert found["adapter_config.json"]["base_model_name_or_path"] == str(base)
    assert gone == {"path": str(tmp_path / "gone"), "exists": False}
    assert [d["exists"] for d in facts["adapter_dirs"]] == [True, False]
    assert "imports" not in facts  # only when asked: importing torch takes seconds


def test_imports_are_reported_one_by_one(tmp_path):
    facts = run_probe({"imports": True}, tmp_path)
    imports = facts["imports"]
    assert set(imports) == {"pexpect", "llamafactory", "torch", "transformers", "peft"}
    for name, fact in imports.items():  # this Python: whatever it has, each said plainly
        assert fact["ok"] or fact["error"].startswith("ModuleNotFoundError"), (name, fact)
