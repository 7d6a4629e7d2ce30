# The two commands of the README: `make run` (set up, then start) and `make test`
# (set up, then run every test). Both work on a fresh Debian machine with python3.
# Set-up steps are quiet: one line each with its time (tests/rig/timed.sh).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TIMED := bash tests/rig/timed.sh

.PHONY: setup setup-dev run test test-latest lock lock-keep reliability-doc lint bench box clients system \
  vendor screenshots

$(VENV)/bin/python:
	@$(TIMED) "venv ($(VENV))" $(PYTHON) -m venv $(VENV)

# The gateway alone: what `make run` needs (no torch, no LlamaFactory: those live on the box),
# exactly as locked in requirements/gateway.txt (versions and hashes; `make lock` refreshes it).
# pip and setuptools are in the lock too (a venv's bundled setuptools has known advisories, and
# make test audits the venv); the project is built with them, not with a freshly fetched backend.
LOCKED := --quiet --require-hashes --no-deps -r
$(VENV)/.installed: requirements/gateway.txt pyproject.toml $(VENV)/bin/python
	@$(TIMED) "gateway install" sh -c '$(PY) -m pip install $(LOCKED) requirements/gateway.txt && \
	  $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .'
	@touch $@

# Plus what the tests, benchmarks and screenshots use (requirements/dev.txt).
$(VENV)/.installed-dev: requirements/dev.txt $(VENV)/.installed
	@$(TIMED) "test tools install" $(PY) -m pip install $(LOCKED) requirements/dev.txt
	@touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# The box: LlamaFactory in its own venv (cached), and the tiny generated model.
box:
	@BOX_PY="$$($(TIMED) 'demo box (LlamaFactory venv)' bash tests/rig/box_env.sh)" && \
	  TINY="$$($(TIMED) "tiny model" bash tests/rig/tiny_model.sh "$$BOX_PY")" && \
	  $(TIMED) "trained adapters" bash tests/rig/train_adapters.sh "$$BOX_PY" "$$TINY" >/dev/null

# With a .env: the configured box. Without one: the local demo box with the tiny model, its
# chats kept apart from a real gateway's (LFGATE_DATA_DIR under ~/.local/share/lfgate/demo,
# whatever DATABASE_URL the shell has). The gateway is exec'd (no shell left between make and
# it) and exits 0 once stopped by Ctrl-C or SIGTERM, so make ends without a "make: ***" line.
run: setup
	@if [ -f .env ]; then \
	  exec $(VENV)/bin/lfgate serve; \
	else \
	  echo "make run: no .env here, so the local demo box serves a tiny random model" >&2; \
	  BOX_PY="$$($(TIMED) 'demo box (LlamaFactory venv)' bash tests/rig/box_env.sh)" && \
	  TINY="$$($(TIMED) 'tiny model' bash tests/rig/tiny_model.sh "$$BOX_PY")" && \
	  TRAINED="$$($(TIMED) 'trained adapters' bash tests/rig/train_adapters.sh "$$BOX_PY" "$$TINY")" && \
	  SSH_HOST= REMOTE_PYTHON="$$BOX_PY" BASE_MODEL_PATH="$$TINY/base" \
	  ADAPTER_PATH="$$TRAINED/words" ADAPTER_DIRS="$$TINY/saves,$$TRAINED" TEMPLATE=qwen \
	  LFGATE_DATA_DIR="$$HOME/.local/share/lfgate/demo" DATABASE_URL= \
	  exec $(VENV)/bin/lfgate serve; \
	fi

lint: setup-dev
	$(PY) -m ruff check .

# The real clients the tests drive, each in its own cached venv from its lock: built here, as
# set-up steps with their times, rather than inside the first test that needs one (on a new
# machine that put some 8 minutes of installs inside pytest's time).
clients:
	@$(TIMED) "Open WebUI (test client)" bash tests/rig/open_webui_env.sh >/dev/null
	@$(TIMED) "lm-eval (test client)" bash tests/rig/lm_eval_env.sh >/dev/null

# Debian's packages the tests use: sshd, PostgreSQL, Chromium (tests/rig/system_deps.sh).
system:
	@$(TIMED) "system packages" bash tests/rig/system_deps.sh

test: setup-dev box system clients
	$(PY) -m ruff check .
	@bash tests/rig/test_all.sh $(PY)

# Resolve every lock file in requirements/ anew, to the newest releases (requirements/lock.sh).
lock: setup-dev
	UV=$(VENV)/bin/uv bash requirements/lock.sh

# The same, keeping every version already locked: what an input added or changed is resolved.
lock-keep: setup-dev
	UV=$(VENV)/bin/uv bash requirements/lock.sh --keep

# The newest releases, unlocked, in a venv of their own (.venv-latest): what `make lock` would
# bring. Not part of `make test`: CI runs it as its own labelled, non-gating step, so a release
# that breaks us is seen before a refresh of the lock lets it in.
test-latest: box
	@bash tests/rig/test_latest.sh $(PYTHON)

# Copy make test's render of the reliability rows (build/reliability.md) to docs/.
reliability-doc: setup-dev
	$(PY) -m tests.rig.reliability --out docs/reliability.md

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
