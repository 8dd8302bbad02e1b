# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup demo test lint typecheck imports unit contract integration e2e bench clean

help:
	@echo "make demo   set up and run a live-selling scenario end to end (embedded default)"
	@echo "make test   set up, then lint, type-check, check the import contracts and run every test"

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

unit: $(STAMP)
	$(BIN)/pytest tests/unit

soak: $(STAMP) ; $(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info livesell.db
