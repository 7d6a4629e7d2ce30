# The two commands of the README: `make run` (set up, then start) and `make test`
# (set up, then run every test). Both work on a fresh Debian machine with python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test lint bench box

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The box: LlamaFactory in its own venv (cached), and the tiny generated model.
box:
	@bash tests/rig/tiny_model.sh "$$(bash tests/rig/box_env.sh)"

run: setup box
	@BOX_PY="$$(bash tests/rig/box_env.sh)"; TINY="$$(bash tests/rig/tiny_model.sh "$$BOX_PY")"; \
	$(PY) -c 'import json, sys; print(json.dumps({"base_model_path": sys.argv[1] + "/base", \
	  "adapter_path": sys.argv[1] + "/adapter", "template": "qwen", "max_new_tokens": 40, \
	  "message": "Hello! Who are you?"}))' "$$TINY" | "$$BOX_PY" remote/chat_inference.py -

lint: setup
	$(PY) -m ruff check .

test: setup box
	bash tests/rig/system_deps.sh
	$(PY) -m ruff check .
	$(PY) -m pytest -ra
	$(PY) -m tests.bench.turn_latency --smoke

bench: setup box
	$(PY) -m tests.bench.turn_latency
