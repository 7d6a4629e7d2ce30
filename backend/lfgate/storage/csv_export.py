"""Every CSV the gateway writes (the leaderboard, prompt-set runs) goes through here, so a
cell a model, a prompt file or an import wrote cannot run as a formula when the file is
opened in a spreadsheet (CSV injection, as OWASP describes it): text starting with `=`, `+`,
`-`, `@`, a tab or a carriage return is prefixed with a single quote, which spreadsheets
show as text and strip. Numbers, and text that is a plain number (`-0.5`), are left alone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text and text.lower().lstrip("+-") not in ("inf", "infinity", "nan")


def safe_cell(value: Any) -> Any:
    """The value as a spreadsheet may read it: formula-looking text made inert."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _is_number(value):
        return "'" + value
    return value


def csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return out.getvalue()
