# kubemint developer entry points. `make test` and `make run` do all set-up themselves on a
# brand-new machine: virtual environment, Python dependencies, control-plane binaries.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help setup binaries lint typecheck unit integration test run clean

help:
	@echo "make test    set everything up, lint, type-check and run the whole test suite"
	@echo "make run     set everything up and start 'kubemint dev up' (local control plane)"
	@echo "make unit    unit tests only (no control plane)"
	@echo "make lint | typecheck | binaries | clean"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

# Control-plane binaries: $KUBEBUILDER_ASSETS if set, else built once from tests/envtest into
# ~/.cache/kubemint (minutes the first time, instant afterwards).
binaries: setup
	$(BIN)/python -m kubemint.devcluster

lint: setup
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: binaries
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test: binaries lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

run: binaries
	$(BIN)/kubemint dev up

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
