#!/usr/bin/env bash
# Build (once) the "box" virtualenv: the real LlamaFactory that the tests drive.
# Cached: rebuilt only when the pinned spec below changes. Prints the venv's python path.
set -euo pipefail

SPEC="torch==2.14.1 torchaudio==2.11.0 llamafactory==0.9.5 pexpect==4.9.0"
CACHE="${LFGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lfgate}"
VENV="${LFGATE_BOX_VENV:-$CACHE/box-venv}"
STAMP="$VENV/.lfgate-box-spec"
PYTHON="${BOX_BASE_PYTHON:-python3}"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" && -x "$VENV/bin/python" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi

echo "box_env: building $VENV with: $SPEC (takes a few minutes, about 7 GB)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet $SPEC >&2
"$VENV/bin/python" -c "import llamafactory.chat, pexpect" >&2
echo "$SPEC" > "$STAMP"
echo "$VENV/bin/python"
