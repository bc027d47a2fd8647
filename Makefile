# kubemint developer entry points. `make test` and `make run` do all set-up themselves on a
# brand-new machine: virtual environment, Python dependencies, control-plane binaries.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup binaries helm lint typecheck unit integration test run bench bench-operator clean

help:
	@echo "make test    set everything up, lint, type-check and run the whole test suite"
	@echo "make run     set everything up and start 'kubemint dev up' (local control plane)"
	@echo "make unit    unit tests only (no control plane)"
	@echo "make bench   all benchmarks (bench-operator, bench-token); medians of several rounds"
	@echo "make bench-operator  time until 1,000 OAuth2Clients are Ready, operator peak RSS"
	@echo "             (options: BENCH_ARGS='--clients N --rounds R …', see --help)"
	@echo "make bench-token  token endpoint tokens/s and p50/p99 per algorithm over HTTP (wrk),"
	@echo "             vs a bare Starlette+joserfc endpoint (TOKEN_BENCH_ARGS='--rounds R …')"
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

# helm for the chart tests: $HELM if set, else built once from tests/envtest/helm.
helm: setup
	$(BIN)/python -c "from kubemint.devcluster.helm import resolve_helm; print(resolve_helm())"

lint: setup
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: binaries
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test: binaries helm lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

run: binaries
	$(BIN)/kubemint dev up

# Measurements, not tests: they exit 0 when a target is missed and 1 only when a run failed.
bench: bench-operator

bench-operator: binaries
	$(BIN)/python -m bench.operator_bench $(BENCH_ARGS)

# Token endpoint under load from wrk (installed here when missing; if that fails the benchmark
# uses its own asyncio load generator and says so). See `python -m bench.token_bench --help`.
TOKEN_BENCH_ARGS ?=
.PHONY: bench-token
bench: bench-token

bench-token: binaries
	@command -v wrk >/dev/null 2>&1 \
	  || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null 2>&1 \
	      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1) \
	  || echo "wrk could not be installed: bench-token uses its Python load generator"
	$(BIN)/python -m bench.token_bench $(TOKEN_BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
