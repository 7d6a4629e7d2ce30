"""Keep the tests and benchmarks away from the user's own setup.

A user of the product has a `.env` in the repository root, an `~/.ssh/config`, a
`known_hosts` and maybe `SSH_HOST` exported in their shell; none of it may reach a test.
`isolate()` runs once, before any test: it drops every gateway setting from the environment
(every key the Settings class reads, plus any `SSH_*`/`GATEWAY_*`), points HOME at an empty
folder (asyncssh and our defaults read `~/.ssh/...` through it) and moves into an empty
working directory (pydantic-settings reads `./.env`). Each test then makes its own settings.
`interruptible()` gives SIGINT and SIGQUIT back their defaults: a test run started from a
script's background job inherits them ignored, every process a test starts would too, and a
test of Ctrl-C would test the launcher rather than the product.

The box side is not the user's machine: the test sshd logs in as this user, so the box's
home is the account's home from the password database (`box_home()`), not HOME.
"""

from __future__ import annotations

import os
import pwd
import signal
import tempfile
from pathlib import Path

from lfgate.config import Settings

# The rig's own variables, which say where the test box is cached; kept.
RIG_KEYS = ("LFGATE_CACHE", "LFGATE_BOX_PYTHON", "LFGATE_BOX_VENV", "LFGATE_TEST_POSTGRES_URL")
USER_PREFIXES = ("SSH_", "GATEWAY_")


def box_home() -> Path:
    """The home folder of this account as an SSH login (the test box) sees it."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def setting_keys() -> set[str]:
    """Every environment key the gateway reads, in upper case."""
    return {name.upper() for name in Settings.model_fields}


def is_user_setting(key: str) -> bool:
    upper = key.upper()
    if upper in RIG_KEYS:
        return False
    return upper in setting_keys() or upper.startswith(USER_PREFIXES)


def isolate() -> Path:
    """Make this process (and every child it starts) hermetic; returns the empty work dir."""
    real_home = Path(os.environ.get("HOME") or box_home())
    cache = os.environ.get("LFGATE_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or real_home / ".cache") / "lfgate")
    for key in [k for k in os.environ if is_user_setting(k)]:
        del os.environ[key]
    os.environ["LFGATE_CACHE"] = cache  # the box venv and tiny model stay where they are
    root = Path(tempfile.mkdtemp(prefix="lfgate-hermetic-"))
    (root / "home").mkdir()
    (root / "work").mkdir()
    os.environ["HOME"] = str(root / "home")
    os.environ.pop("XDG_CONFIG_HOME", None)
    os.chdir(root / "work")
    return root / "work"


def interruptible() -> None:
    """SIGINT raises KeyboardInterrupt here and is at its default in every child (an ignored
    signal stays ignored across exec; a handled one is reset to its default), as on a
    terminal; SIGQUIT at its default too."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
