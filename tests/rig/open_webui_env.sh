#!/usr/bin/env bash
# Build (once) the virtualenv of Open WebUI, the chat front end that tests/test_open_webui_box.py
# drives in Chromium against the gateway's /v1, installed from the lock
# (requirements/open-webui.txt, every file checked against its hash). Large: Open WebUI pins
# hundreds of packages, torch (a CUDA build, as PyPI serves it) and sentence-transformers among
# them (for its embedding model, which it cannot load offline and does without). Measured
# first build on the 2-core test machine: 315 s, 7.4 GB (torch's CUDA libraries most of it).
# Cached: rebuilt only when the lock or this script changes; one builder at a time (a lock
# beside the cache), the stamp written last. Prints the venv's python path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
LOCK="$here/../../requirements/open-webui.txt"
SPEC="$(cat "$LOCK" "$here/open_webui_env.sh" | sha256sum | cut -c1-16)"
CACHE="${LFGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lfgate}"
VENV="$CACHE/open-webui-venv"
STAMP="$VENV/.lfgate-open-webui-spec"
PYTHON="${BOX_BASE_PYTHON:-python3}"

ready() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" && -x "$VENV/bin/python" ]]; }

if ! ready; then
  mkdir -p "$CACHE"
  exec 9>"$CACHE/open-webui.lock"
  flock 9
  if ! ready; then
    echo "open_webui_env: building $VENV from requirements/open-webui.txt (about 5 minutes, 7.4 GB)" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
      --no-deps --no-cache-dir -r "$LOCK" >&2
    "$VENV/bin/python" -c "import open_webui" >&2
    echo "$SPEC" > "$STAMP"
  fi
fi
echo "$VENV/bin/python"
