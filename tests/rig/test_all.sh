#!/usr/bin/env bash
# The test half of `make test`: every pytest test, then build/reliability.md rendered from the
# rows the passing tests recorded (tests/rig/reliability.py; `make reliability-doc` copies it to
# the tracked docs/reliability.md, so a test run leaves the tree clean), then the benchmark's
# smoke run.
# Both run whether or not pytest passed (the rows of the tests that passed, and the figures,
# still say something), and neither hides pytest's status: the last lines say what failed, and
# end with pytest's own summary line.
set -uo pipefail
py=$1
log="$(mktemp)"
# One process by default (about 30 min of pytest here). LFGATE_TEST_WORKERS=2 runs two
# pytest-xdist workers, each test file on one of them so a module's shared fixtures start once
# (18-27 min, by machine; the machine has two cores: three workers took as long as two, 25:57
# against 26:45 on one machine, and failed three tests under the load). Two workers
# were the default for one commit: the next fresh-clone run on them failed twice, once on a
# test race fixed since, and once on the terminal test whose Ctrl-C at the prompt went
# unanswered (seen five times, only under load: CPython's readline missed a SIGINT that came
# just before its wait; lfgate.commands.prompt_interrupts fixes it). So one process again,
# until three runs in a row on two workers are green. Per-test times in build/junit.xml; ends
# with the 15 slowest tests.
"$py" -m pytest -ra -n "${LFGATE_TEST_WORKERS:-0}" --dist loadfile --durations=15 \
  --junitxml="$PWD/build/junit.xml" 2>&1 | tee "$log"
tests=${PIPESTATUS[0]}
"$py" -m tests.rig.reliability
doc=$?
"$py" -m tests.bench.run --smoke
bench=$?
echo
if ((doc == 0)); then echo "make test: build/reliability.md rendered (make reliability-doc updates docs/)"; else echo "make test: build/reliability.md FAILED to render (exit $doc)"; fi
if ((bench == 0)); then echo "make test: benchmark smoke ok"; else echo "make test: benchmark smoke FAILED (exit $bench)"; fi
if ((tests != 0)); then echo "make test: pytest FAILED (exit $tests): the failures are listed in its summary above"; fi
grep -E '^=+ .*[0-9]+ (passed|failed|error).* in [0-9.]+s.* =+$' "$log" | tail -n 1
rm -f "$log"
if ((tests != 0)); then exit "$tests"; fi  # pytest's own status, whatever else failed
exit $((doc != 0 || bench != 0))
