"""The installed package: built without warnings, with the wrappers and the page inside it."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_builds_without_warnings_and_carries_remote_and_frontend(tmp_path):
    """A fresh `pip install` builds in isolation with the newest setuptools, which warned
    about data folders that were not listed packages (270 lines on a first `make run`)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    # Camel-case warning classes (BuildBackendWarning, SetuptoolsDeprecationWarning, ...)
    # come from the build; pip's own upper-case "WARNING:" lines are about this machine.
    warnings = [line for line in (result.stdout + result.stderr).splitlines()
                if re.search(r"[a-z]Warning\b", line)]
    assert warnings == []
    [wheel] = tmp_path.glob("lfgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("lfgate/remote/wrapper_protocol.py", "lfgate/remote/chat_inference.py",
                   "lfgate/frontend/index.html", "lfgate/frontend/components/message.js",
                   "lfgate/frontend/vendor/MANIFEST.json",
                   "lfgate/frontend/vendor/marked-katex-extension/index.esm.js",
                   "lfgate/box/session.py", "lfgate/storage/migrations/env.py"):
        assert needed in names, needed
