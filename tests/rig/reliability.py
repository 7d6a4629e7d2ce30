"""docs/reliability.md, made from test results: a test that injects a fault or sends bad input
records what it did and what the product answered (`reliability.record(...)`, from what the
test observed, never a hand-written claim); rows of tests that passed are written to
build/reliability.json at the end of the session, and `python -m tests.rig.reliability`
renders them as the document's tables into build/reliability.md (what `make test` does: a test
run never rewrites a tracked file); `python -m tests.rig.reliability --out
docs/reliability.md` (`make reliability-doc`) updates the committed copy.

A run of some tests updates their rows and keeps the others' (a row's test id says which test
wrote it), so the document is the latest result of every test that records one. The document
is a function of the rows alone (no time, no commit), so a run that changes nothing changes
no line of it; and several test sessions in one tree (or one session's workers) merge their
rows one at a time, under a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "reliability.json"
DOC = ROOT / "build" / "reliability.md"  # make test's render; docs/ holds the committed copy
AREAS = (  # the document's sections, in order; a row of another area fails its test
    ("link", "The SSH link and the box's sshd"),
    ("box", "The wrapper, the CLI and the box"),
    ("storage", "The database"),
    ("gateway", "The gateway itself"),
    ("limits", "Limits and load"),
    ("streams", "Replies that outlive the page"),
    ("security", "Security"),
    ("bad-input", "Bad input, every route"),
)
# Text that differs from run to run has no place in a row (the document would change on every
# run, and say nothing the reader can use): ids the gateway makes (uuid4 hex), loopback ports,
# temporary paths, timestamps. Name what they are instead ("an unknown chat id").
UNSTABLE = (
    (re.compile(r"\b[0-9a-f]{32}\b"), "an id the gateway made"),
    (re.compile(r"\b(?:127\.0\.0\.1|localhost|\[::1\]):\d+"), "a port"),
    (re.compile(r"(?:^|[\s'\"(=:])/tmp/\S*|/pytest-of-\S*"), "a temporary path"),
    (re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d"), "a timestamp"),
)


@dataclass(frozen=True)
class Row:
    area: str
    case: str  # the fault or input, as a user would name it
    outcome: str  # what the product did, as the test saw it
    test: str  # the pytest node id that recorded it


@dataclass
class TestRows:
    """The rows one test records; kept only if the test passes."""

    __test__ = False  # not a pytest test class

    test: str
    rows: list[Row] = field(default_factory=list)

    def record(self, area: str, case: str, outcome: str) -> None:
        """One row: `case` the fault injected or the input sent, `outcome` what the product
        answered, both from what the test observed. Raises ValueError for an unknown area,
        empty text, or text that would change from run to run (see UNSTABLE)."""
        if area not in dict(AREAS):
            raise ValueError(f"unknown reliability area {area!r}: one of {[a for a, _ in AREAS]}")
        case, outcome = " ".join(str(case).split()), " ".join(str(outcome).split())
        for name, text in (("case", case), ("outcome", outcome)):
            if not text:
                raise ValueError(f"a reliability row needs a {name}")
            for pattern, what in UNSTABLE:
                if found := pattern.search(text):
                    raise ValueError(f"the row's {name} holds {what} ({found.group().strip()!r}),"
                                     f" which changes from run to run: {text!r}")
        self.rows.append(Row(area, case, outcome, self.test))


def results_path() -> Path:
    """Where a session writes its rows (LFGATE_RELIABILITY_OUT: a test of this module)."""
    return Path(os.environ.get("LFGATE_RELIABILITY_OUT") or RESULTS)


def read_rows(path: Path) -> list[Row]:
    """The rows stored at `path`; none if there is no file yet. A file that is not ours (or
    was cut short by a crash) is an error naming it, never silently dropped."""
    if not path.exists():
        return []
    try:
        return [Row(**row) for row in json.loads(path.read_text())["rows"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a reliability results file ({exc}): delete it and "
                         "run the tests again") from exc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One merge at a time on `path`, across processes (a lock file beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _function(test: str) -> str:
    """A test id without its parameters: the rows of one parametrized test sit together."""
    return test.split("[", 1)[0]


def merge(passed: dict[str, list[Row]], ran: set[str], path: Path) -> None:
    """This session's rows over the file's: a test that ran replaces its old rows, in their
    place (none if it failed); tests that did not run keep theirs. `passed` in the order the
    tests ran: a test new to the file goes after the rows of its parametrized siblings (else
    at the end), so a table keeps the order of its cases."""
    with _locked(path):
        rows: list[Row] = []
        placed: set[str] = set()
        for row in read_rows(path):
            if row.test not in ran:
                rows.append(row)
            elif row.test not in placed:
                rows += passed.get(row.test, [])
                placed.add(row.test)
        for test, mine in passed.items():
            if test in placed:
                continue
            siblings = [i for i, r in enumerate(rows) if _function(r.test) == _function(test)]
            at = siblings[-1] + 1 if siblings else len(rows)
            rows[at:at] = mine
        _write_atomically(path, json.dumps(
            {"updated": datetime.now(UTC).isoformat(timespec="seconds"),
             "rows": [asdict(r) for r in rows]}, indent=1, ensure_ascii=False) + "\n")


def _cell(text: str) -> str:
    """Text for a cell of a GitHub table, on one line, shown as it is: `|` would end the
    cell, `<` start HTML (a hostile input's `<img onerror>` must show, not vanish), `*`
    emphasis; `\\` is escaped first so an escape of ours is never undone by the text's."""
    for char in "\\|<*":
        text = text.replace(char, "\\" + char)
    return " ".join(text.split())


def _code(text: str) -> str:
    """A code span that holds any text: a fence longer than its longest run of backticks."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    escaped = text.replace("|", "\\|")
    return f"{fence}{pad}{escaped}{pad}{fence}"


def render(rows: list[Row]) -> str:
    """The document: a section per area (in AREAS' order, empty ones left out); in each, the
    rows of a test function together (functions by name), in the order they were stored."""
    lines = [
        "# Reliability: faults and bad input, and what LF Gate does",
        "",
        "Generated from test results by `python -m tests.rig.reliability` (`make test` runs it",
        "after the tests): each row was recorded by the test named beside it, from what the test",
        "injected and what the product answered, and only if that test passed. Do not edit by",
        "hand.",
        "",
        f"Rows: {len(rows)}.",
    ]
    known = dict(AREAS)
    strays = sorted({r.area for r in rows if r.area not in known})
    if strays:
        raise ValueError(f"rows of unknown areas {strays}: one of {list(known)}")
    for area, title in AREAS:
        mine = sorted((r for r in rows if r.area == area), key=lambda r: _function(r.test))
        if not mine:
            continue
        lines += ["", f"## {title}", "", f"{len(mine)} row{'s' if len(mine) != 1 else ''}.", "",
                  "| Fault or input | What the product does | Test |", "|---|---|---|"]
        for r in mine:
            name = r.test.split("::", 1)[-1]
            lines.append(f"| {_cell(r.case)} | {_cell(r.outcome)} | {_code(name)} |")
    return "\n".join(lines) + "\n"


def main(results: Path | None = None, doc: Path = DOC) -> int:
    results = results or results_path()
    try:
        rows = read_rows(results)
    except ValueError as exc:
        print(f"reliability: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"reliability: no results at {results}: run the tests first; {doc.name} is "
              "left as it was", file=sys.stderr)
        return 1
    text = render(rows)
    if doc.exists() and doc.read_text() == text:
        print(f"reliability: {doc.name} unchanged ({len(rows)} rows)", file=sys.stderr)
        return 0
    doc.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(doc, text)
    print(f"reliability: wrote {doc.name} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Render the reliability rows as markdown.")
    parser.add_argument("--out", type=Path, default=DOC,
                        help="where to write it (default build/reliability.md; "
                             "make reliability-doc writes docs/reliability.md)")
    raise SystemExit(main(doc=parser.parse_args().out))
