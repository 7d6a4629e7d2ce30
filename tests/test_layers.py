"""Data flows one way (docs/architecture.md): api -> services -> box and storage. A module
may import only from its own layer or the layers below it; the client commands (`lfgate
models`, `lfgate chat`) reach the gateway over HTTP, so they import none of it."""

from __future__ import annotations

import ast
from pathlib import Path

import lfgate

PACKAGE = Path(lfgate.__file__).parent
# What each layer may import from lfgate (besides itself); config (with box_list, the boxes it
# describes) and remote are shared.
ALLOWED = {
    "storage": {"storage"},
    "box": {"box", "config", "remote"},
    "services": {"services", "box", "storage", "config", "box_list", "remote"},
    "api": {"api", "services", "box", "storage", "config", "box_list", "remote"},
    # The client commands talk to a gateway over HTTP only, never to its insides.
    "commands": {"commands", "config", "remote"},
}


def _lfgate_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.split(".")[1] for name in names
            if name.startswith("lfgate.") and name.count(".") >= 1}


def test_each_layer_imports_only_from_below():
    wrong = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for target in _lfgate_imports(path) - allowed:
                wrong.append(f"{path.relative_to(PACKAGE)} imports lfgate.{target}")
    assert wrong == []


def test_the_package_is_where_its_imports_say():
    """backend/lfgate/box/session.py is lfgate.box.session: no package-dir remapping."""
    root = Path(__file__).resolve().parent.parent
    assert root / "backend" / "lfgate" == PACKAGE
    assert "package-dir" not in (root / "pyproject.toml").read_text()
