#!/usr/bin/env bash
# Make (once) the tiny model and adapters with the box's Python; prints their folder.
# Cached under a name that changes when anything that shapes it changes: this script, the
# generator, the box's build or its lock. Generated in
# place, in its final folder (tiny.json, written last, marks it complete), because the files
# name their own paths (an adapter's base_model_name_or_path, a run's model_name_or_path): made
# in a temporary folder and renamed, every demo checkpoint claimed a base "not on the box".
# One generator at a time (a lock beside the cache), so two first runs cannot mix their files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BOX_PYTHON="${1:-$("$here/box_env.sh")}"
CACHE="${LFGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lfgate}"
key="$(cat "$here/tiny_model.sh" "$here/make_tiny_model.py" "$here/saves_tree.py" \
  "$here/box_env.sh" "$here/../../requirements/box.txt" | sha256sum | cut -c1-12)"
OUT="$CACHE/tiny-$key"
mkdir -p "$CACHE"
exec 9>"$CACHE/tiny.lock"
flock 9
if [[ ! -f "$OUT/tiny.json" ]]; then
  echo "tiny_model: generating $OUT" >&2
  rm -rf "$OUT"
  mkdir -p "$OUT"
  "$BOX_PYTHON" "$here/make_tiny_model.py" "$OUT" >"$OUT.log" 2>&1 || { cat "$OUT.log" >&2; exit 1; }
  rm -f "$OUT.log"
fi
echo "$OUT"
