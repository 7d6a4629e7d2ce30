#!/usr/bin/env bash
# make test-latest: the gateway and its test tools at today's newest releases (no lock), in a
# venv of their own (.venv-latest), through every test but the browser's and the real box's
# (those pin their own side: Chromium from Debian, the box from requirements/box.txt). It shows
# what `make lock` would break before a refresh lets it in. Never gating: it says what it saw in
# one line (the log keeps pytest's output) and exits 0, even when the newest releases do not
# install (that too is news of what a refresh would break).
set -uo pipefail
python=${1:-python3}
venv=.venv-latest
log=build/test-latest.log
mkdir -p build
if ! bash tests/rig/timed.sh "venv ($venv)" "$python" -m venv --clear "$venv" ||
   ! bash tests/rig/timed.sh "newest releases install" sh -c \
     "$venv/bin/python -m pip install --quiet --upgrade pip setuptools && \
      $venv/bin/python -m pip install --quiet --upgrade -e '.[dev]'"; then
  echo "make test-latest, newest releases, not gating: they did NOT install (see above)"
  exit 0
fi
"$venv/bin/python" -m pip freeze --exclude-editable > build/test-latest-versions.txt
names() { tr 'A-Z_.' 'a-z--' | sort; }  # PyPI names compared as the same name
changed=$(diff <(grep -E '^[A-Za-z0-9._-]+==' requirements/dev.txt | sed 's/ .*//' | names) \
  <(names < build/test-latest-versions.txt) | grep -c '^>' || true)
LFGATE_RELIABILITY_OUT="$PWD/build/test-latest-reliability.json" \
  "$venv/bin/python" -m pytest -q -n "${LFGATE_TEST_WORKERS:-2}" --dist loadfile -m "not box" \
  --ignore-glob='tests/test_ui*' \
  --deselect tests/test_lock.py::test_the_venv_under_test_is_exactly_the_lock \
  -p no:cacheprovider >"$log" 2>&1
status=$?
summary=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//')
if ((status == 0)); then verdict="all passed"; else verdict="FAILED (pytest exit $status)"; fi
echo "make test-latest, newest releases ($changed differ from the lock), not gating: $verdict;" \
  "pytest said '${summary:-nothing}'; see $log"
exit 0
