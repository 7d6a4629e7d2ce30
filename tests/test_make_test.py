"""`make test`'s test half (tests/rig/test_all.sh): the benchmark smoke runs even when pytest
fails, and the run ends saying what failed, with pytest's summary line last."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "rig" / "test_all.sh"


def fake_python(tmp_path: Path, pytest_status: int, bench_status: int) -> Path:
    """Stands in for the venv's python: `-m pytest` and `-m tests.bench.run` say they ran."""
    py = tmp_path / "python"
    py.write_text(f"""#!/bin/sh
case "$2" in
  pytest) echo "=========== 3 passed, 1 failed in 1.23s ==========="; exit {pytest_status} ;;
  tests.bench.run) echo "bench smoke ran"; exit {bench_status} ;;
esac
exit 99
""")
    py.chmod(0o755)
    return py


def run(tmp_path: Path, pytest_status: int, bench_status: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(fake_python(tmp_path, pytest_status,
                                                                bench_status))],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_benchmark_smoke_still_runs_when_pytest_fails(tmp_path):
    result = run(tmp_path, 1, 0)
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert "bench smoke ran" in lines
    assert "make test: pytest FAILED (exit 1): the failures are listed in its summary above" \
        in lines
    assert lines[-1] == "=========== 3 passed, 1 failed in 1.23s ==========="


def test_a_failed_benchmark_smoke_fails_the_run(tmp_path):
    result = run(tmp_path, 0, 3)
    assert result.returncode == 1
    assert "make test: benchmark smoke FAILED (exit 3)" in result.stdout


def test_all_green_exits_zero(tmp_path):
    result = run(tmp_path, 0, 0)
    assert result.returncode == 0 and "make test: benchmark smoke ok" in result.stdout
    assert "FAILED" not in result.stdout
