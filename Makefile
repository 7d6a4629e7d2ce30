# The two commands of the README: `make run` (set up, then start) and `make test`
# (set up, then run every test). Both work on a fresh Debian machine with python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test lint bench box vendor screenshots

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The box: LlamaFactory in its own venv (cached), and the tiny generated model.
box:
	@bash tests/rig/tiny_model.sh "$$(bash tests/rig/box_env.sh)"

# With a .env: the configured box. Without one: the local demo box with the tiny model.
run: setup
	@if [ -f .env ]; then \
	  exec $(VENV)/bin/lfgate serve; \
	else \
	  echo "make run: no .env here, starting the local demo box (tiny random model)" >&2; \
	  BOX_PY="$$(bash tests/rig/box_env.sh)" && TINY="$$(bash tests/rig/tiny_model.sh "$$BOX_PY")" && \
	  SSH_HOST= REMOTE_PYTHON="$$BOX_PY" BASE_MODEL_PATH="$$TINY/base" \
	  ADAPTER_PATH="$$TINY/adapter" TEMPLATE=qwen exec $(VENV)/bin/lfgate serve; \
	fi

lint: setup
	$(PY) -m ruff check .

test: setup box
	bash tests/rig/system_deps.sh
	$(PY) -m ruff check .
	$(PY) -m pytest -ra
	$(PY) -m tests.bench.run --smoke

# Every benchmark, written to docs/benchmarks.md (about 10 minutes).
bench: setup box
	bash tests/rig/system_deps.sh
	$(PY) -m tests.bench.run

# Re-copy the page's pinned browser libraries (frontend/package.json) into frontend/vendor.
vendor:
	bash frontend/vendor.sh

# The README's screenshots of the page (docs/screenshots/), on the scripted box double.
screenshots: setup
	$(PY) -m tests.rig.screenshots
