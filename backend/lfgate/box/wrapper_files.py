"""The wrapper programs shipped inside the package, and the content hash that names their
folder on the box (a changed wrapper gets a new folder, so a stale one is never run)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import lfgate.remote

SCRIPTS = {"cli": "chat_cli_wrapper.py", "script": "chat_inference.py"}
_SHARED = ("wrapper_protocol.py", "wrapper_serve.py", "json_grammar.py", "text_stream.py",
           "step_batch.py", "live_batch.py", "discover_adapters.py", "box_probe.py",
           "box_status.py")
DISCOVER = "discover_adapters.py"  # runs once per scan of the box's training folders
STATUS = "box_status.py"  # runs every few seconds: GPUs and load


@dataclass(frozen=True)
class WrapperFiles:
    folder: Path
    names: tuple[str, ...]
    digest: str  # first 16 hex digits of the sha256 over names and contents
    size: int = 0  # their bytes: the room an upload needs on the box

    @classmethod
    def from_folder(cls, folder: Path) -> WrapperFiles:
        names = tuple(sorted({*SCRIPTS.values(), *_SHARED}))
        sha, size = hashlib.sha256(), 0
        for name in names:
            data = (folder / name).read_bytes()
            sha.update(name.encode() + b"\0" + data + b"\0")
            size += len(data)
        return cls(folder, names, sha.hexdigest()[:16], size)

    @classmethod
    def packaged(cls) -> WrapperFiles:
        return cls.from_folder(Path(lfgate.remote.__file__).parent)
