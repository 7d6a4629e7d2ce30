"""docs/reliability.md's recorder (tests/rig/reliability.py): rows are what tests record, kept
only for tests that passed; a run of some tests replaces their rows and keeps the others';
the document groups rows by area and shows any text as it is. Fast: no gateway, no box."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rig.reliability import AREAS, Row, TestRows, main, merge, read_rows, render

ROOT = Path(__file__).resolve().parent.parent


def rows_of(test: str, *cases: str, area: str = "storage") -> list[Row]:
    recorder = TestRows(test)
    for case in cases:
        recorder.record(area, case, f"{case}: answered")
    return recorder.rows


def cases(path: Path) -> list[tuple[str, str]]:
    return [(row.test, row.case) for row in read_rows(path)]


def test_merge_keeps_rows_of_tests_that_did_not_run_and_replaces_those_that_ran(tmp_path):
    path = tmp_path / "reliability.json"
    merge({"t.py::a": rows_of("t.py::a", "a1", "a2"), "t.py::b": rows_of("t.py::b", "b1"),
           "t.py::c": rows_of("t.py::c", "c1")}, {"t.py::a", "t.py::b", "t.py::c"}, path)
    # The next session ran a (passed, new rows) and b (failed: no rows); c did not run.
    merge({"t.py::a": rows_of("t.py::a", "a3")}, {"t.py::a", "t.py::b"}, path)
    assert cases(path) == [("t.py::a", "a3"), ("t.py::c", "c1")]
    # Not running at all (a session of other tests) changes nothing of theirs.
    merge({}, set(), path)
    assert cases(path) == [("t.py::a", "a3"), ("t.py::c", "c1")]
    assert json.loads(path.read_text())["rows"][0] == {
        "area": "storage", "case": "a3", "outcome": "a3: answered", "test": "t.py::a"}


def test_a_table_keeps_the_order_of_its_cases_across_partial_runs(tmp_path):
    path = tmp_path / "reliability.json"
    table = [f"t.py::table[{name}]" for name in ("zeta", "alpha", "mid")]
    merge({test: rows_of(test, test.split("[")[1]) for test in table} | {
        "t.py::other": rows_of("t.py::other", "o")}, {*table, "t.py::other"}, path)
    # One case again (-k), and a case new to the table: in place, and beside its siblings.
    merge({"t.py::table[alpha]": rows_of("t.py::table[alpha]", "again"),
           "t.py::table[new]": rows_of("t.py::table[new]", "new")},
          {"t.py::table[alpha]", "t.py::table[new]"}, path)
    assert [case for _, case in cases(path)] == ["zeta]", "again", "mid]", "new", "o"]


def _merge_one(path: str, index: int) -> None:
    test = f"t.py::parallel[{index}]"
    merge({test: rows_of(test, f"case {index}")}, {test}, Path(path))


def test_sessions_merging_at_once_lose_no_rows(tmp_path):
    """Engineers' sessions in one tree finish at the same time: each merge reads and writes
    the file under a lock, so none overwrites another's rows."""
    path = tmp_path / "reliability.json"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_merge_one, args=(str(path), i)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [worker.exitcode for worker in workers] == [0] * 8
    assert sorted(case for _, case in cases(path)) == [f"case {i}" for i in range(8)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_a_file_that_is_not_ours_is_named_not_dropped(tmp_path):
    path = tmp_path / "reliability.json"
    path.write_text('{"rows": [{"area": "storage"')  # cut short
    with pytest.raises(ValueError, match="not a reliability results file"):
        merge({}, set(), path)
    assert main(path, tmp_path / "doc.md") == 1 and not (tmp_path / "doc.md").exists()


def test_record_refuses_an_unknown_area_empty_text_and_text_that_changes_every_run():
    recorder = TestRows("t.py::x")
    with pytest.raises(ValueError, match="unknown reliability area 'stroage'"):
        recorder.record("stroage", "the database is locked", "503")
    with pytest.raises(ValueError, match="needs a outcome"):
        recorder.record("storage", "the database is locked", " \n")
    for unstable, what in (("chat 0f6b2c9e4d8a4f1e9b7c3a5d2e8f6a41 is missing", "an id"),
                           ("refused at 127.0.0.1:45123", "a port"),
                           ("no such file /tmp/pytest-of-root/pytest-3/db", "a temporary path"),
                           ("at 2026-03-01T12:00:01", "a timestamp")):
        with pytest.raises(ValueError, match=what):
            recorder.record("storage", "case", unstable)
    recorder.record("storage", "  the database\n is locked ", "503\tstorage_unavailable")
    assert recorder.rows == [Row("storage", "the database is locked",
                                 "503 storage_unavailable", "t.py::x")]


def test_render_groups_by_area_in_order_and_shows_any_text_as_it_is():
    rows = [
        Row("bad-input", "POST /api/chat: a | in it", "422: <img onerror=x> *not* emphasis",
            "tests/test_b.py::test_table[a|b]"),
        Row("storage", "locked", "503 storage_unavailable", "tests/test_s.py::test_locked"),
        Row("security", "no token", "401 on `every` route", "tests/test_a.py::test_`odd`"),
        Row("storage", "full", "503 storage_full", "tests/test_s.py::test_full"),
        Row("storage", "locked again", "503", "tests/test_s.py::test_locked"),
    ]
    text = render(rows)
    titles = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    order = [title for _, title in AREAS]
    assert titles == sorted(titles, key=order.index) == [
        "The database", "Security", "Bad input, every route"]
    storage = text.split("## The database")[1].split("## ")[0]
    # Functions by name; a test's rows together, in the order it recorded them.
    assert storage.index("| full |") < storage.index("| locked |") \
        < storage.index("| locked again |")
    table_rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in
                  line and not line.startswith("| Fault")]
    assert len(table_rows) == 5
    bad = next(line for line in table_rows if "a \\| in it" in line)
    # Three cells: every | of the text escaped, in the test's name too.
    assert bad.replace("\\|", "").count("|") == 4
    assert "\\<img onerror=x> \\*not\\* emphasis" in bad
    assert "`test_table[a\\|b]`" in bad
    odd = next(line for line in table_rows if "no token" in line)
    assert "`` test_`odd` ``" in odd  # a name holding backticks is still one code span
    assert render(rows) == text  # a function of the rows: no time, no commit


def test_render_refuses_a_row_of_an_unknown_area():
    with pytest.raises(ValueError, match="unknown areas \\['stroage'\\]"):
        render([Row("stroage", "x", "y", "t.py::x")])


def test_main_writes_the_document_from_the_results(tmp_path):
    results, doc = tmp_path / "reliability.json", tmp_path / "docs" / "reliability.md"
    assert main(results, doc) == 1 and not doc.exists()  # nothing recorded yet
    merge({"t.py::a": rows_of("t.py::a", "a1")}, {"t.py::a"}, results)
    assert main(results, doc) == 0
    assert "| a1 | a1: answered | `a` |" in doc.read_text()


RECORDING_TESTS = '''
import os

def test_passes(reliability):
    reliability.record("storage", "case of " + os.environ["RUN"], "it held")

def test_fails(reliability):
    reliability.record("storage", "never kept", "it did not")
    assert os.environ["RUN"] == "never"

def test_records_nothing():
    pass
'''


def run_session(folder: Path, out: Path, run: str, *args: str) -> subprocess.CompletedProcess:
    """A real pytest session with the repository's conftest (its `reliability` fixture and
    its session-finish hook) on the tests above."""
    env = {**os.environ, "RUN": run, "LFGATE_RELIABILITY_OUT": str(out),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # only the conftest: a faster start
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest",
                           "-p", "no:cacheprovider", "--rootdir", str(folder),
                           "-c", str(folder / "pytest.ini"), *args, str(folder / "test_rows.py")],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_the_fixture_keeps_rows_of_passed_tests_only_through_a_real_session(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_rows.py").write_text(RECORDING_TESTS)
    out = tmp_path / "build" / "reliability.json"
    first = run_session(tmp_path, out, "one")
    assert first.returncode == 1, first.stdout + first.stderr  # test_fails failed
    assert cases(out) == [("test_rows.py::test_passes", "case of one")]
    second = run_session(tmp_path, out, "two", "-k", "test_fails")
    assert second.returncode == 1, second.stdout + second.stderr
    assert cases(out) == [("test_rows.py::test_passes", "case of one")]  # did not run: kept
    third = run_session(tmp_path, out, "three", "-k", "test_passes")
    assert third.returncode == 0, third.stdout + third.stderr
    assert cases(out) == [("test_rows.py::test_passes", "case of three")]  # ran: replaced
