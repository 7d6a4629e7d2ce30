"""`make test`'s test half (tests/rig/test_all.sh): build/reliability.md is rendered and the
benchmark smoke runs even when pytest fails, neither hides pytest's exit status, and the run
ends saying what failed, with pytest's summary line last."""

from __future__ import annotations

import subprocess
from pathlib import Path

RENDERED = "make test: build/reliability.md rendered (make reliability-doc updates docs/)"
SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "rig" / "test_all.sh"


def fake_python(tmp_path: Path, pytest_status: int, bench_status: int, doc_status: int
                ) -> Path:
    """Stands in for the venv's python: `-m pytest`, `-m tests.rig.reliability` and
    `-m tests.bench.run` say they ran (in a log, in order)."""
    py = tmp_path / "python"
    ran = tmp_path / "ran"
    py.write_text(f"""#!/bin/sh
echo "$2" >> {ran}
case "$2" in
  pytest) echo "=========== 3 passed, 1 failed in 1.23s ==========="; exit {pytest_status} ;;
  tests.rig.reliability) echo "reliability doc ran"; exit {doc_status} ;;
  tests.bench.run) echo "bench smoke ran"; exit {bench_status} ;;
esac
exit 99
""")
    py.chmod(0o755)
    return py


def run(tmp_path: Path, pytest_status: int, bench_status: int, doc_status: int = 0
        ) -> subprocess.CompletedProcess:
    py = fake_python(tmp_path, pytest_status, bench_status, doc_status)
    return subprocess.run(["bash", str(SCRIPT), str(py)],
                          capture_output=True, text=True, timeout=60, check=False)


def ran(tmp_path: Path) -> list[str]:
    return (tmp_path / "ran").read_text().split()


def test_the_benchmark_smoke_still_runs_when_pytest_fails(tmp_path):
    result = run(tmp_path, 1, 0)
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert "bench smoke ran" in lines
    assert "make test: pytest FAILED (exit 1): the failures are listed in its summary above" \
        in lines
    assert lines[-1] == "=========== 3 passed, 1 failed in 1.23s ==========="
    assert ran(tmp_path) == ["pytest", "tests.rig.reliability", "tests.bench.run"]
    assert RENDERED in lines


def test_the_reliability_doc_is_rendered_after_pytest_and_never_hides_its_status(tmp_path):
    result = run(tmp_path, 2, 0, doc_status=1)  # pytest interrupted, the render failed too
    assert result.returncode == 2  # pytest's own status, not the render's
    lines = result.stdout.strip().splitlines()
    assert ran(tmp_path) == ["pytest", "tests.rig.reliability", "tests.bench.run"]
    assert "make test: build/reliability.md FAILED to render (exit 1)" in lines
    assert "make test: pytest FAILED (exit 2): the failures are listed in its summary above" \
        in lines
    assert lines[-1] == "=========== 3 passed, 1 failed in 1.23s ==========="


def test_a_failed_render_alone_fails_the_run(tmp_path):
    result = run(tmp_path, 0, 0, doc_status=1)
    assert result.returncode == 1
    assert "make test: build/reliability.md FAILED to render (exit 1)" in result.stdout
    assert "pytest FAILED" not in result.stdout


def test_a_failed_benchmark_smoke_fails_the_run(tmp_path):
    result = run(tmp_path, 0, 3)
    assert result.returncode == 1
    assert "make test: benchmark smoke FAILED (exit 3)" in result.stdout


def test_all_green_exits_zero(tmp_path):
    result = run(tmp_path, 0, 0)
    assert result.returncode == 0 and "make test: benchmark smoke ok" in result.stdout
    assert RENDERED in result.stdout
    assert "FAILED" not in result.stdout
