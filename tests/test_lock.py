"""The installs are pinned: the gateway, the test tools and the demo box install from the lock
files in requirements/ (every version pinned, every file hashed), the lock holds every dependency
pyproject.toml names, and the venv the tests run in is exactly the lock. And the gateway starts
quietly with today's releases of what it imports (cryptography 51's DSA warnings, raised from
asyncssh, are silenced where they come from, not by hiding all warnings)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"


def pins(lock: Path) -> dict[str, tuple[str, str | None, list[str]]]:
    """name -> (version, marker or None, hashes) for every requirement of a uv/pip-compile lock.
    A name pinned twice (under exclusive markers) keeps the entry whose marker holds here."""
    found: dict[str, tuple[str, str | None, list[str]]] = {}
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        req = Requirement(re.sub(r"\s*--hash=\S+", "", line))
        [spec] = req.specifier
        assert spec.operator == "==", f"{lock.name}: {line[:80]} is not pinned with =="
        marker = str(req.marker) if req.marker else None
        if req.marker and not req.marker.evaluate():
            continue
        found[canonicalize_name(req.name)] = (spec.version, marker, hashes)
    return found


def test_every_lock_pins_each_package_to_one_version_with_its_hashes():
    for name in ("gateway.txt", "dev.txt", "box.txt", "lm-eval.txt", "open-webui.txt"):
        locked = pins(LOCKS / name)
        assert len(locked) > 10, name
        unhashed = [pkg for pkg, (_, _, hashes) in locked.items() if not hashes]
        assert unhashed == [], f"{name}: no --hash for {unhashed}"


def test_the_dev_lock_holds_the_gateway_lock_at_the_same_versions():
    gateway, dev = pins(LOCKS / "gateway.txt"), pins(LOCKS / "dev.txt")
    differ = {pkg: (v, dev.get(pkg, ("missing",))[0]) for pkg, (v, _, _) in gateway.items()
              if dev.get(pkg, ("missing",))[0] != v}
    assert differ == {}, "make lock: dev.txt must be held to gateway.txt's versions"


def test_the_locks_hold_every_dependency_pyproject_names():
    """A dependency added to pyproject.toml without `make lock` would be missing from a
    fresh install (the installs use --no-deps): name it here rather than on a new machine."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, reqs in (("gateway.txt", project["dependencies"]),
                       ("dev.txt", project["dependencies"]
                        + project["optional-dependencies"]["dev"])):
        locked = pins(LOCKS / lock)
        for text in reqs:
            req = Requirement(text)
            name = canonicalize_name(req.name)
            assert name in locked, f"{req.name} is in pyproject.toml but not in {lock}: make lock"
            assert req.specifier.contains(locked[name][0], prereleases=True), \
                f"{lock} pins {name}=={locked[name][0]}, outside pyproject's {req.specifier}"
    box = pins(LOCKS / "box.txt")
    for line in (LOCKS / "box.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            assert req.specifier.contains(box[canonicalize_name(req.name)][0]), line


def test_the_venv_under_test_is_exactly_the_lock():
    """make setup-dev installs requirements/dev.txt: what the tests run with is what CI and a
    newcomer get. (A venv set up by hand with other versions fails here, on purpose.)"""
    locked = pins(LOCKS / "dev.txt")
    installed = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in metadata.distributions()}
    wrong = {pkg: (version, installed.get(pkg)) for pkg, (version, _, _) in locked.items()
             if installed.get(pkg) != version}
    assert wrong == {}, "locked version vs installed: run make setup-dev"


def test_the_gateway_imports_without_a_single_warning():
    """With `-W default` every warning that would show does: importing the app, the command
    and the SSH transport prints nothing (cryptography 51 made asyncssh's import print ten lines
    and broke `lfgate serve`'s one-line errors)."""
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c",
         "import lfgate.app, lfgate.cli, lfgate.box.ssh_box"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_asyncssh_is_imported_only_through_its_quiet_import():
    """The filter must be in place before asyncssh's first import: any module importing it
    directly could be the first, and bring the warnings back."""
    direct = []
    for path in [*(ROOT / "backend").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        if path.name == "asyncssh_import.py" or ".venv" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(import asyncssh|from asyncssh\b)", line):
                direct.append(f"{path.relative_to(ROOT)}:{number}")
    assert direct == [], "import asyncssh via lfgate.box.asyncssh_import"
