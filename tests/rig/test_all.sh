#!/usr/bin/env bash
# The test half of `make test`: every pytest test, then docs/reliability.md rendered from the
# rows the passing tests recorded (tests/rig/reliability.py), then the benchmark's smoke run.
# Both run whether or not pytest passed (the rows of the tests that passed, and the figures,
# still say something), and neither hides pytest's status: the last lines say what failed, and
# end with pytest's own summary line.
set -uo pipefail
py=$1
log="$(mktemp)"
"$py" -m pytest -ra 2>&1 | tee "$log"
tests=${PIPESTATUS[0]}
"$py" -m tests.rig.reliability
doc=$?
"$py" -m tests.bench.run --smoke
bench=$?
echo
if ((doc == 0)); then echo "make test: docs/reliability.md rendered"; else echo "make test: docs/reliability.md FAILED to render (exit $doc)"; fi
if ((bench == 0)); then echo "make test: benchmark smoke ok"; else echo "make test: benchmark smoke FAILED (exit $bench)"; fi
if ((tests != 0)); then echo "make test: pytest FAILED (exit $tests): the failures are listed in its summary above"; fi
grep -E '^=+ .*[0-9]+ (passed|failed|error).* in [0-9.]+s.* =+$' "$log" | tail -n 1
rm -f "$log"
if ((tests != 0)); then exit "$tests"; fi  # pytest's own status, whatever else failed
exit $((doc != 0 || bench != 0))
