"""The one shell command that starts a wrapper on the box.

A fixed string: every path and value in it goes through shlex.quote, and no user text is
ever part of it (messages travel as JSON on the wrapper's stdin).
"""

from __future__ import annotations

import shlex

from lfgate.config import Settings

# Non-interactive SSH shells do not run conda's shell hook; source it from the usual places.
_CONDA_HOOK = (
    'for c in "$HOME/miniconda3" "$HOME/anaconda3" "$HOME/miniforge3" "$HOME/mambaforge" '
    '/opt/conda; do if [ -f "$c/etc/profile.d/conda.sh" ]; then . "$c/etc/profile.d/conda.sh"; '
    "break; fi; done"
)


def quote_path(path: str) -> str:
    """Quote a path for sh, keeping a leading `~/` meaning the box user's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def wrapper_command(settings: Settings, script_path: str) -> str:
    steps = []
    if settings.remote_work_dir:
        steps.append(f"cd {quote_path(settings.remote_work_dir)}")
    if settings.conda_env:
        steps.append(f"{{ {_CONDA_HOOK}; conda activate {shlex.quote(settings.conda_env)}; }}")
    python = settings.remote_python or "python3"
    steps.append(f"exec {quote_path(python)} {quote_path(script_path)} --serve")
    return " && ".join(steps)
