"""The one shell command that starts a wrapper on the box, and what its failures mean.

A fixed string: every path and value in it goes through shlex.quote, and no user text is
ever part of it (messages travel as JSON on the wrapper's stdin).
"""

from __future__ import annotations

import re
import shlex

from lfgate.box.errors import BoxError, CondaEnvNotFound, CondaNotFound
from lfgate.config import Settings

# Marks the command prints to stderr when conda cannot be used; explain_start_failure reads them.
CONDA_NOT_FOUND_MARK = "lfgate-box: conda_not_found"
CONDA_ENV_MARK = "lfgate-box: conda_env_not_found"
# Where conda is looked for, in order: on PATH, where `conda init` pointed ~/.bashrc, then
# any install under these folders (miniconda3, anaconda3, miniforge3, mambaforge, ...).
CONDA_PLACES = ("~/*", "/opt/*", "/usr/local/*")

# A non-interactive SSH login (`ssh box command`) does not read ~/.bashrc, where `conda init`
# sets conda up, so the command finds conda.sh itself and sources it.
_CONDA_SETUP = (
    'lfgate_conda=""; '
    'if command -v conda >/dev/null 2>&1; then '
    'lfgate_conda=$(dirname "$(dirname "$(command -v conda)")"); '
    "else lfgate_conda=$(sed -n \"s|.*'\\(/[^']*\\)/bin/conda'.*|\\1|p\" \"$HOME/.bashrc\" "
    "2>/dev/null | head -n 1); fi; "
    'if [ ! -f "$lfgate_conda/etc/profile.d/conda.sh" ]; then lfgate_conda=""; '
    'for c in "$HOME"/*/etc/profile.d/conda.sh /opt/*/etc/profile.d/conda.sh '
    '/usr/local/*/etc/profile.d/conda.sh; do '
    'if [ -f "$c" ]; then lfgate_conda=${c%/etc/profile.d/conda.sh}; break; fi; done; fi; '
    f'if [ -z "$lfgate_conda" ]; then echo "{CONDA_NOT_FOUND_MARK}" >&2; exit 97; fi; '
    '. "$lfgate_conda/etc/profile.d/conda.sh"'
)


def quote_path(path: str) -> str:
    """Quote a path for sh, keeping a leading `~/` meaning the box user's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _conda_activate(env: str) -> str:
    listed = "$(conda env list 2>/dev/null | awk '!/^#/ && NF {print $1}' | tr '\\n' ' ')"
    return (f"{{ {_CONDA_SETUP}; conda activate {shlex.quote(env)} || "
            f'{{ echo "{CONDA_ENV_MARK} root=$lfgate_conda envs={listed}" >&2; exit 98; }}; }}')


def wrapper_command(settings: Settings, script_path: str, arg: str = "--serve") -> str:
    """`exec PYTHON SCRIPT ARG` in REMOTE_WORK_DIR, with CONDA_ENV active. `arg` is a fixed
    word of ours (--serve, or none for a program that reads its job on stdin)."""
    steps = []
    if settings.remote_work_dir:
        steps.append(f"cd {quote_path(settings.remote_work_dir)}")
    if settings.conda_env:
        steps.append(_conda_activate(settings.conda_env))
    python = settings.remote_python or "python3"
    tail = f" {shlex.quote(arg)}" if arg else ""
    steps.append(f"exec {quote_path(python)} {quote_path(script_path)}{tail}")
    return " && ".join(steps)


def explain_start_failure(settings: Settings, stderr: str) -> BoxError | None:
    """The error a user can act on when the command failed before the wrapper said hello."""
    env = settings.conda_env
    if CONDA_NOT_FOUND_MARK in stderr:
        places = ", ".join(f"{place}/etc/profile.d/conda.sh" for place in CONDA_PLACES)
        return CondaNotFound(
            f"CONDA_ENV={env} is set, but conda is not on the PATH that a non-interactive SSH "
            f"login sees (`ssh box command` does not read ~/.bashrc, where `conda init` sets "
            f"it up), and no conda install was found in {places}",
            hint=f"On the box, `conda run -n {env} which python` prints the env's Python: set "
                 "REMOTE_PYTHON to that path and clear CONDA_ENV. Or clear CONDA_ENV if the "
                 "box's python3 has LlamaFactory.")
    for line in stderr.splitlines():
        marked = re.match(rf"{re.escape(CONDA_ENV_MARK)} root=(.*) envs=(.*)$", line)
        if marked:
            root, envs = marked.group(1), marked.group(2).split()
            return CondaEnvNotFound(
                f"conda at {root} has no environment {env!r} (it has: "
                f"{', '.join(envs) or 'none'})",
                hint=f"Set CONDA_ENV to one of those, or REMOTE_PYTHON to the Python of the env "
                     f"that has LlamaFactory (for example {root}/envs/NAME/bin/python).")
    return None
