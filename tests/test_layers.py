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


# Inside services/, folders by capability, and data flows one way between them too: evals
# (compare, prompt sets) use chat turns, which use the models; the boxes' own services (fleet,
# monitor, doctor) use the models; errors and the listen-port check are shared leaves.
SERVICE_GROUPS = {
    "models": {"errors"},
    "chat": {"models", "errors"},
    "evals": {"chat", "models", "errors"},
    "boxes": {"models", "errors", "listen_port"},
    "errors": set(),
    "listen_port": set(),
}


def test_service_folders_import_one_way():
    services = PACKAGE / "services"
    wrong = []
    for path in sorted(services.rglob("*.py")):
        rel = path.relative_to(services)
        group = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if group == "__init__.py" or group == "__init__":
            continue
        assert group in SERVICE_GROUPS, f"services/{rel}: a new folder or module wants its rule"
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                       else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for module in modules:
                parts = module.split(".")
                if parts[:2] == ["lfgate", "services"] and len(parts) > 2:
                    target = parts[2]
                    if target != group and target not in SERVICE_GROUPS[group]:
                        wrong.append(f"services/{rel} imports lfgate.services.{target}")
    assert wrong == []
