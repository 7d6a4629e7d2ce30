#!/usr/bin/env bash
# Train (once) the tiny LoRA adapters that do something, with LlamaFactory itself
# (llamafactory-cli train, on the CPU) on the tiny model's base; prints their folder:
# words/ (answers a few prompts in plain words), tool/ (calls get_weather, or Open WebUI's
# list_memories, in the qwen template's tool format, then answers from the tool's result) and
# trained.json (written last: their paths, the prompts and the exact answers greedy decoding
# gives, the training seconds).
#   train_adapters.sh [BOX_PYTHON [TINY_DIR]]
# Cached under a name that changes when anything that shapes them changes: this script, the
# trainer and its data, the tiny model's generator, the box's lock and the tiny folder itself
# (an adapter names its base's path). Trained in place, in the final folder, for that reason;
# one trainer at a time (a lock beside the cache). Quiet unless it fails (then its log).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BOX_PYTHON="${1:-$("$here/box_env.sh")}"
TINY_DIR="$(cd "${2:-$("$here/tiny_model.sh" "$BOX_PYTHON")}" && pwd)"
CACHE="${LFGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lfgate}"
key="$( { cat "$here/train_adapters.sh" "$here/train_adapters.py" \
  "$here"/train_adapters_data/* "$here/tiny_model.sh" "$here/make_tiny_model.py" \
  "$here/../../requirements/box.txt"; echo "$TINY_DIR"; } | sha256sum | cut -c1-12)"
OUT="$CACHE/trained-$key"
mkdir -p "$CACHE"
exec 9>"$CACHE/trained.lock"
flock 9
if [[ ! -f "$OUT/trained.json" ]]; then
  echo "train_adapters: training $OUT (about two minutes)" >&2
  rm -rf "$OUT"
  mkdir -p "$OUT"
  "$BOX_PYTHON" "$here/train_adapters.py" "$TINY_DIR" "$OUT" >"$OUT.log" 2>&1 \
    || { cat "$OUT.log" >&2; exit 1; }
  rm -f "$OUT.log"
fi
echo "$OUT"
