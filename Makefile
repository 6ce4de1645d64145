# make setup   -- virtualenv + pinned install (tools/setup.sh; re-running is a no-op)
# make fsdd    -- the main job: egs/fsdd/asr1 end to end
# make test    -- setup, then the test suite (fast tests + the recipe integration test)
# make lint    -- ruff and the import-linter contracts
.PHONY: setup fsdd test test-fast lint
VENV ?= .venv
PY := $(VENV)/bin/python

setup:
	bash tools/setup.sh

fsdd: setup
	cd egs/fsdd/asr1 && ./run.sh

lint: setup
	$(VENV)/bin/ruff check speechlm kernels tests egs tools
	$(VENV)/bin/lint-imports

test: setup lint
	$(PY) -m pytest -m "not slow and not gpu" -q

test-fast: setup
	$(PY) -m pytest -q
