"""What the doctor reports: each check's finding (a mark, the fact, for a failure the exact
fix), and a notice before a slow section so a quiet terminal is not taken for a hang."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "skip"]


@dataclass
class Finding:
    section: str
    name: str
    status: Status
    found: str
    fix: str = ""
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Waiting:
    """Said before a section that takes a while: what it waits for."""

    section: str
    what: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
