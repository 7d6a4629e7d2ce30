#!/usr/bin/env bash
# The test half of `make test`: every pytest test, then the benchmark's smoke run, which runs
# whether or not pytest passed (its figures still say something). The last lines say what
# failed, and end with pytest's own summary line.
set -uo pipefail
py=$1
log="$(mktemp)"
"$py" -m pytest -ra 2>&1 | tee "$log"
tests=${PIPESTATUS[0]}
"$py" -m tests.bench.run --smoke
bench=$?
echo
if ((bench == 0)); then echo "make test: benchmark smoke ok"; else echo "make test: benchmark smoke FAILED (exit $bench)"; fi
if ((tests != 0)); then echo "make test: pytest FAILED (exit $tests): the failures are listed in its summary above"; fi
grep -E '^=+ .*[0-9]+ (passed|failed|error).* in [0-9.]+s.* =+$' "$log" | tail -n 1
rm -f "$log"
exit $((tests != 0 || bench != 0))
