# The two commands of the README: `make run` (set up, then start) and `make test`
# (set up, then run every test). Both work on a fresh Debian machine with python3.
# Set-up steps are quiet: one line each with its time (tests/rig/timed.sh).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TIMED := bash tests/rig/timed.sh

.PHONY: setup setup-dev run test lint bench box vendor screenshots

$(VENV)/bin/python:
	@$(TIMED) "venv ($(VENV))" $(PYTHON) -m venv $(VENV)

# The gateway alone: what `make run` needs (no torch, no LlamaFactory: those live on the box).
# setuptools too: a venv's bundled copy (65.5 on Python 3.11) has known advisories, and
# make test audits the venv (tests/test_dependency_audit.py).
$(VENV)/.installed: pyproject.toml $(VENV)/bin/python
	@$(TIMED) "gateway install" sh -c '$(PY) -m pip install --quiet --upgrade pip setuptools && \
	  $(PY) -m pip install --quiet -e .'
	@touch $@

# Plus what the tests, benchmarks and screenshots use.
$(VENV)/.installed-dev: $(VENV)/.installed
	@$(TIMED) "test tools install" $(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# The box: LlamaFactory in its own venv (cached), and the tiny generated model.
box:
	@BOX_PY="$$($(TIMED) 'demo box (LlamaFactory venv)' bash tests/rig/box_env.sh)" && \
	  $(TIMED) "tiny model" bash tests/rig/tiny_model.sh "$$BOX_PY" >/dev/null

# With a .env: the configured box. Without one: the local demo box with the tiny model.
run: setup
	@if [ -f .env ]; then \
	  exec $(VENV)/bin/lfgate serve; \
	else \
	  echo "make run: no .env here, so the local demo box serves a tiny random model" >&2; \
	  BOX_PY="$$($(TIMED) 'demo box (LlamaFactory venv)' bash tests/rig/box_env.sh)" && \
	  TINY="$$($(TIMED) 'tiny model' bash tests/rig/tiny_model.sh "$$BOX_PY")" && \
	  SSH_HOST= REMOTE_PYTHON="$$BOX_PY" BASE_MODEL_PATH="$$TINY/base" \
	  ADAPTER_PATH="$$TINY/adapter" ADAPTER_DIRS="$$TINY/saves" TEMPLATE=qwen \
	  exec $(VENV)/bin/lfgate serve; \
	fi

lint: setup-dev
	$(PY) -m ruff check .

test: setup-dev box
	@$(TIMED) "system packages" bash tests/rig/system_deps.sh
	$(PY) -m ruff check .
	@bash tests/rig/test_all.sh $(PY)

# Every benchmark, written to docs/benchmarks.md (about 15 minutes).
bench: setup-dev box
	@$(TIMED) "system packages" bash tests/rig/system_deps.sh
	$(PY) -m tests.bench.run

# Re-copy the page's pinned browser libraries (frontend/package.json) into frontend/vendor.
vendor:
	bash frontend/vendor.sh

# The README's screenshots of the page (docs/screenshots/), on the scripted box double.
screenshots: setup-dev
	$(PY) -m tests.rig.screenshots
