#!/usr/bin/env bash
# Build (once) the virtualenv of lm-evaluation-harness, which the evaluation tests run against
# the gateway's /v1 (tests/test_lm_eval_box.py), installed from the lock
# (requirements/lm-eval.txt, every file checked against its hash). No torch in it: lm_eval's
# OpenAI-API model types need none (about 0.5 GB, where torch alone would be several).
# Cached: rebuilt only when the lock or this script changes; one builder at a time (a lock
# beside the cache), the stamp written last. Prints the venv's python path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
LOCK="$here/../../requirements/lm-eval.txt"
SPEC="$(cat "$LOCK" "$here/lm_eval_env.sh" | sha256sum | cut -c1-16)"
CACHE="${LFGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lfgate}"
VENV="$CACHE/lm-eval-venv"
STAMP="$VENV/.lfgate-lm-eval-spec"
PYTHON="${BOX_BASE_PYTHON:-python3}"

ready() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" && -x "$VENV/bin/python" ]]; }

if ! ready; then
  mkdir -p "$CACHE"
  exec 9>"$CACHE/lm-eval.lock"
  flock 9
  if ! ready; then
    echo "lm_eval_env: building $VENV from requirements/lm-eval.txt (a minute, about 0.5 GB)" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
      --no-deps -r "$LOCK" >&2
    "$VENV/bin/python" -c "import lm_eval.models.openai_completions, transformers" >&2
    echo "$SPEC" > "$STAMP"
  fi
fi
echo "$VENV/bin/python"
