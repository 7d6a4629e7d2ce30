#!/usr/bin/env bash
# `make lock`: resolve every lock file anew from its inputs, each to the newest versions they
# allow, with the hash of every file. Commit the result on its own (one commit per refresh), after
# `make test` passes on it; `make test-latest` shows beforehand what the newest releases break.
#   gateway.txt  the gateway (pyproject.toml) and what installs it (build.in): `make run`
#   dev.txt      the same plus the test tools (the dev extra), held to gateway.txt's versions
#   box.txt      the demo and test box: the real LlamaFactory (box.in), `make box`
#   lm-eval.txt  lm-evaluation-harness for the evaluation tests (lm-eval.in,
#                tests/rig/lm_eval_env.sh), held to box.txt's versions (its tokenizer)
#   open-webui.txt  Open WebUI for its compatibility test (open-webui.in,
#                tests/rig/open_webui_env.sh): this platform and Python only, not held to
#                box.txt (Open WebUI pins its own transformers)
# `lock.sh --keep` (`make lock-keep`): the same, but every version already in a lock stays;
# only what an input added or changed is resolved (adding a package is not a refresh).
# The gateway and dev locks are universal (any OS, Python >= 3.11); box.txt too, but its torch
# is a CUDA build on Linux, as PyPI serves it.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
upgrade=(--upgrade)
[[ "${1:-}" == --keep ]] && upgrade=()
common=(--universal --generate-hashes --python-version 3.11 "${upgrade[@]}" --quiet
  --custom-compile-command "make lock")
"$uv" pip compile "${common[@]}" pyproject.toml requirements/build.in -o requirements/gateway.txt
"$uv" pip compile "${common[@]}" pyproject.toml requirements/build.in --extra dev \
  --constraint requirements/gateway.txt -o requirements/dev.txt
"$uv" pip compile "${common[@]}" requirements/box.in -o requirements/box.txt
"$uv" pip compile "${common[@]}" requirements/lm-eval.in --constraint requirements/box.txt \
  -o requirements/lm-eval.txt
"$uv" pip compile --generate-hashes --python-version 3.11 "${upgrade[@]}" --quiet \
  --custom-compile-command "make lock" requirements/open-webui.in -o requirements/open-webui.txt
