#!/usr/bin/env bash
# Make (once) the tiny model and adapters with the box's Python; prints their folder.
# Cached under a name that changes when the generator or the box spec changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BOX_PYTHON="${1:-$("$here/box_env.sh")}"
CACHE="${LFGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lfgate}"
key="$(cat "$here/make_tiny_model.py" "$here/saves_tree.py" "$here/box_env.sh" \
  "$here/../../requirements/box.txt" | sha256sum | cut -c1-12)"
OUT="$CACHE/tiny-$key"
if [[ ! -f "$OUT/tiny.json" ]]; then
  echo "tiny_model: generating $OUT" >&2
  tmp="$(mktemp -d "$CACHE/tiny-tmp.XXXXXX")"
  "$BOX_PYTHON" "$here/make_tiny_model.py" "$tmp" >&2 2>"$tmp.log" || { cat "$tmp.log" >&2; exit 1; }
  rm -rf "$OUT" "$tmp.log"
  mv "$tmp" "$OUT"
fi
echo "$OUT"
