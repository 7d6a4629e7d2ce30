#!/usr/bin/env bash
# Build (once) the "box" virtualenv: the real LlamaFactory that the tests and the demo drive,
# installed from the lock (requirements/box.txt, every file checked against its hash).
# Cached: rebuilt only when the lock changes. Prints the venv's python path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
LOCK="$here/../../requirements/box.txt"
SPEC="$(sha256sum <"$LOCK" | cut -c1-16)"
CACHE="${LFGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lfgate}"
VENV="${LFGATE_BOX_VENV:-$CACHE/box-venv}"
STAMP="$VENV/.lfgate-box-spec"
PYTHON="${BOX_BASE_PYTHON:-python3}"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" && -x "$VENV/bin/python" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi

echo "box_env: building $VENV from requirements/box.txt (takes a few minutes, about 7 GB)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --require-hashes --no-deps -r "$LOCK" >&2
"$VENV/bin/python" -c "import llamafactory.chat, pexpect" >&2
echo "$SPEC" > "$STAMP"
echo "$VENV/bin/python"
