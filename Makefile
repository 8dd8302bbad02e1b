# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup lock demo test lint typecheck imports unit contract integration e2e bench clean

help:
	@echo "make demo   set up and run a live-selling scenario end to end (embedded default)"
	@echo "make test   set up, then lint, type-check, check the import contracts and run every test"
	@echo "make bench  run every benchmark (short settings, ~15 min) and print one table of targets"

# Every dependency from the lock file (hashes checked), then the project itself with no resolution.
$(STAMP): pyproject.toml setup.py requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The lock files, from pyproject.toml's direct pins: requirements.lock for the image (the sentry
# and demo extras: the image runs the embedded demo, ADR 0016), requirements-dev.lock for CI and
# `make setup` (dev too, the same versions). For the image's platform: Linux x86_64, Python 3.11.
LOCK := $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock'
lock: $(STAMP)
	$(LOCK) --extra sentry --extra demo --upgrade -o requirements.lock
	$(LOCK) --extra sentry --extra demo --extra dev -c requirements.lock --upgrade \
		-o requirements-dev.lock

demo: $(STAMP)
	$(BIN)/livesell simulate --engine embedded

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

test: lint typecheck imports
	$(BIN)/pytest

# Not part of `make test`: it loads the machine for minutes (bench/summary.py says how).
bench: $(STAMP)
	$(BIN)/python bench/summary.py

unit: $(STAMP)
	$(BIN)/pytest tests/unit

soak: $(STAMP) ; $(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info livesell.db
