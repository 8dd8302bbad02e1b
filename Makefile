# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup demo test lint typecheck imports unit contract integration e2e bench clean

help:
	@echo "make demo   set up and run a live-selling scenario end to end (embedded default)"
	@echo "make test   set up, then lint, type-check, check the import contracts and run every test"
	@echo "make bench  run every benchmark (short settings, ~15 min) and print one table of targets"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sentry]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/livesell simulate --engine embedded

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info livesell.db
