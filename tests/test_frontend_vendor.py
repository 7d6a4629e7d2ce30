"""The page's third-party libraries: pinned in frontend/package.json, shipped in
frontend/vendor (MANIFEST.json written by frontend/vendor.sh), and never fetched from a CDN."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
VENDOR = FRONTEND / "vendor"


def _manifest() -> dict:
    return json.loads((VENDOR / "MANIFEST.json").read_text())


def test_vendored_versions_are_the_pinned_ones() -> None:
    pinned = json.loads((FRONTEND / "package.json").read_text())["dependencies"]
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in pinned.values()), "pin exact versions"
    assert _manifest()["versions"] == pinned
    lock = json.loads((FRONTEND / "package-lock.json").read_text())["packages"]
    for name, version in pinned.items():
        assert lock[f"node_modules/{name}"]["version"] == version


def test_vendored_files_are_unchanged_since_vendor_sh() -> None:
    files = _manifest()["files"]
    on_disk = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*")
               if p.is_file() and p.name != "MANIFEST.json"}
    assert on_disk == set(files)
    for name, digest in files.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_import_map_and_styles_point_at_shipped_files() -> None:
    page = (FRONTEND / "index.html").read_text()
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', page, re.S)[1])
    for target in imports["imports"].values():
        assert (FRONTEND / target).is_file(), target
    for href in re.findall(r'(?:href|src)="([^"]+)"', page):
        assert (FRONTEND / href).is_file(), href


def test_nothing_is_loaded_from_another_origin() -> None:
    ours = [*FRONTEND.glob("*.html"), *FRONTEND.glob("*.js"), *FRONTEND.glob("*.css"),
            *FRONTEND.glob("components/*.js"), *FRONTEND.glob("state/*.js")]
    for path in ours:
        text = path.read_text()
        assert not re.search(r"""(?:src|href|import|from|url)\s*\(?\s*["']?(?:https?:)?//""",
                             text), path
    for path in VENDOR.rglob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", path.read_text()), path


def test_every_bare_import_is_in_the_import_map() -> None:
    page = (FRONTEND / "index.html").read_text()
    mapped = set(json.loads(re.search(r'<script type="importmap">(.*?)</script>', page,
                                      re.S)[1])["imports"])
    sources = [*FRONTEND.glob("*.js"), *FRONTEND.glob("components/*.js"),
               *FRONTEND.glob("state/*.js"),
               *VENDOR.rglob("*.js"), *VENDOR.rglob("*.mjs")]
    for path in sources:
        for spec in re.findall(r"""(?:^|[;\s}])(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]""",
                               path.read_text(), re.M):
            if not spec.startswith("."):
                assert spec in mapped, f"{path.name} imports {spec!r}"
