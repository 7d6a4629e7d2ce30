#!/usr/bin/env python3
"""What the box looks like from where the wrapper runs, in one call: the facts the gateway's doctor
judges (issue 16). Started with the wrapper's own command (REMOTE_WORK_DIR, CONDA_ENV,
REMOTE_PYTHON), so the Python, PATH and folder it reports are the wrapper's.

    python3 box_probe.py < job.json      # prints one JSON object

The job: {"mode", "cli_path"?, "work_dir"?, "base_model_path"?, "adapter_paths": [...],
"adapter_dirs": [...], "imports": bool}. Stdlib only; the slow part (importing torch and
LlamaFactory, seconds) runs only with "imports", in a child process with a time limit, so a
broken install is a fact here rather than a crash. Without it, `installed` still says whether
LlamaFactory and pexpect are there (found, not imported): the gateway's start-up check.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

INTERACTIVE_TIMEOUT_S = 15
IMPORTS_TIMEOUT_S = 180
# Run in a child Python: each import reported on its own, torch's view of the GPUs with it.
_IMPORTS = r"""
import json, sys
facts = {}
for name in ("pexpect", "llamafactory", "torch", "transformers", "peft"):
    try:
        module = __import__(name)
        facts[name] = {"ok": True, "version": getattr(module, "__version__", None)}
    except Exception as exc:
        facts[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
if facts["torch"]["ok"]:
    import torch
    gpus = []
    try:
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(index)
                gpus.append({"index": index, "name": torch.cuda.get_device_name(index),
                             "free_bytes": free, "total_bytes": total})
        facts["torch"]["cuda"] = torch.cuda.is_available()
    except Exception as exc:
        facts["torch"]["cuda"] = False
        facts["torch"]["cuda_error"] = f"{type(exc).__name__}: {exc}"[:400]
    facts["torch"]["gpus"] = gpus
print(json.dumps(facts))
"""


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None
         ) -> tuple[int | None, str, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, "", f"{type(exc).__name__}: {exc}"
    return done.returncode, done.stdout, done.stderr


def interactive_path() -> dict[str, Any]:
    """The PATH an interactive login shell sets up (~/.bashrc, `conda init`): where users
    find `llamafactory-cli` when they try it by hand."""
    shell = os.environ.get("SHELL") or "/bin/sh"
    marker = "lfgate-path:"
    code, out, err = _run([shell, "-lic", f'printf "{marker}%s\\n" "$PATH"'],
                          INTERACTIVE_TIMEOUT_S)
    for line in out.splitlines():
        if line.startswith(marker):
            return {"shell": shell, "path": line[len(marker):]}
    return {"shell": shell, "path": None, "error": (err or f"exit {code}").strip()[-400:]}


def which_on(name: str, path: str | None) -> str | None:
    return shutil.which(name, path=path) if path else None


def find_cli(configured: str | None) -> str | None:
    """Where the CLI wrapper will find llamafactory-cli (chat_cli_wrapper.find_cli's order:
    LLAMAFACTORY_CLI_PATH, beside this Python, then PATH), or None."""
    if configured:
        path = os.path.expanduser(configured)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    beside = os.path.join(os.path.dirname(sys.executable), "llamafactory-cli")
    return beside if os.access(beside, os.X_OK) else shutil.which("llamafactory-cli")


def can_write(folder: str) -> bool:
    """A real write, not os.access: root passes access() on a read-only mount's folder
    only by mode bits, and a full disk passes it too."""
    try:
        fd, name = tempfile.mkstemp(prefix=".lfgate-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def folder_facts(path: str) -> dict[str, Any]:
    expanded = os.path.expanduser(path)
    facts: dict[str, Any] = {"path": path, "exists": os.path.isdir(expanded)}
    if facts["exists"]:
        facts["readable"] = os.access(expanded, os.R_OK | os.X_OK)
        facts["writable"] = can_write(expanded)
        try:
            usage = shutil.disk_usage(expanded)
            facts["free_bytes"], facts["total_bytes"] = usage.free, usage.total
        except OSError as exc:
            facts["disk_error"] = str(exc)
    return facts


def model_facts(path: str) -> dict[str, Any]:
    """A model or adapter folder: what is there, and which base an adapter names."""
    expanded = os.path.expanduser(path)
    facts: dict[str, Any] = {"path": path, "exists": os.path.isdir(expanded)}
    for name in ("config.json", "adapter_config.json"):
        file = os.path.join(expanded, name)
        if os.path.isfile(file):
            facts[name] = {"readable": os.access(file, os.R_OK)}
            try:
                with open(file, encoding="utf-8") as handle:
                    data = json.load(handle)
                if name == "adapter_config.json":
                    facts[name]["base_model_name_or_path"] = data.get(
                        "base_model_name_or_path")
                    facts[name]["peft_type"] = data.get("peft_type")
                else:
                    facts[name]["model_type"] = data.get("model_type")
            except (OSError, ValueError) as exc:
                facts[name]["error"] = f"{type(exc).__name__}: {exc}"[:300]
    if facts["exists"]:
        facts["weight_bytes"] = sum(
            os.path.getsize(os.path.join(expanded, f)) for f in os.listdir(expanded)
            if f.endswith((".safetensors", ".bin")) and os.path.isfile(
                os.path.join(expanded, f)))
    return facts


def installed(name: str) -> bool:
    """Whether this Python has the package, found without importing it (milliseconds, where
    importing torch and LlamaFactory takes seconds): the gateway's start-up check."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def probe(job: dict[str, Any]) -> dict[str, Any]:
    here_path = os.environ.get("PATH", "")
    login = interactive_path()
    cli = job.get("cli_path") or "llamafactory-cli"
    facts: dict[str, Any] = {
        "python": {"executable": sys.executable, "version": sys.version.split()[0]},
        "cwd": folder_facts(os.getcwd()),
        "home": os.path.expanduser("~"),
        "path": here_path,
        "interactive": login,
        "conda_prefix": os.environ.get("CONDA_PREFIX"),
        "conda_env": os.environ.get("CONDA_DEFAULT_ENV"),
        "cli": {"name": cli, "here": find_cli(job.get("cli_path")),
                "interactive": which_on(os.path.basename(cli), login.get("path"))},
        "work_dir": folder_facts(job["work_dir"]) if job.get("work_dir") else None,
        "base": model_facts(job["base_model_path"]) if job.get("base_model_path") else None,
        "adapters": [model_facts(p) for p in job.get("adapter_paths") or []],
        "adapter_dirs": [folder_facts(p) for p in job.get("adapter_dirs") or []],
        "installed": {name: installed(name) for name in ("llamafactory", "pexpect")},
    }
    if job.get("imports"):
        code, out, err = _run([sys.executable, "-c", _IMPORTS], IMPORTS_TIMEOUT_S)
        try:
            facts["imports"] = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            facts["imports"] = {"error": (err or f"exit {code}").strip()[-600:]}
    return facts


def main() -> int:
    job = json.loads(sys.stdin.read() or "{}")
    print(json.dumps(probe(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
