# kubemint developer entry points. `make test` and `make run` do all set-up themselves on a
# brand-new machine: virtual environment, Python dependencies, control-plane binaries.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup prerequisites binaries node-binaries helm prometheus lint typecheck unit integration node-test test run run-node run-cluster bench bench-operator clean docs nginx

help:
	@echo "make test    set everything up, lint, type-check and run the whole test suite"
	@echo "make run     set everything up and start 'kubemint dev up' (local control plane)"
	@echo "make run-node  the same with a real node (kubemint dev up --node; root): pods run"
	@echo "make run-cluster  a real node with kubemint installed by its chart (helm install"
	@echo "             charts/kubemint, the image built from the Dockerfile; root)"
	@echo "make unit    unit tests only (no control plane)"
	@echo "make node-test  the node tier only (tests/node: a real single-node cluster; root)"
	@echo "make bench   all benchmarks (bench-operator, bench-token, bench-revocation); medians"
	@echo "make bench-operator  time until 1,000 OAuth2Clients are Ready, operator peak RSS"
	@echo "             (options: BENCH_ARGS='--clients N --rounds R …', see --help)"
	@echo "make bench-token  token endpoint tokens/s and p50/p99 per algorithm over HTTP (wrk),"
	@echo "             vs a bare Starlette+joserfc endpoint (TOKEN_BENCH_ARGS='--rounds R …'),"
	@echo "             then private_key_jwt with the shared jti store vs per replica"
	@echo "             (bench/assertion_bench.py, ASSERTION_BENCH_ARGS='--requests N …')"
	@echo "make bench-revocation  etcd growth and latency per revocation, hourly buckets vs"
	@echo "             per-token entries and watermarks (REVOCATION_BENCH_ARGS='--rounds R …')"
	@echo "make bench-node  time to a Ready node and Secret → mounted file delay, median of 3"
	@echo "             fresh nodes (NODE_BENCH_ARGS='--rounds R --updates U'; root)"
	@echo "make bench-scale  the token server's view at 10,000 clients (rebuild work per change,"
	@echo "             token p99 under churn, RSS per client, API requests at rest), then"
	@echo "             bench-operator at 10,000 clients (SCALE_BENCH_ARGS='--clients 2000 …',"
	@echo "             SCALE_OPERATOR_ARGS='--clients 2000 …'; see python -m bench.scale_bench --help)"
	@echo "make image   build the kubemint image (Dockerfile, buildah, no registry) into an OCI"
	@echo "             archive in ~/.cache/kubemint/images; prints its path and reference"
	@echo "make docs    regenerate docs/crd-reference.md from crds/*.yaml"
	@echo "make lint | typecheck | binaries | prometheus | clean"

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

# The node tier's binaries (kubelet, kube-proxy, kube-scheduler, containerd, CoreDNS), built
# once from tests/node/*/go.mod into ~/.cache/kubemint/node, and its images (pause, CoreDNS,
# busybox) as OCI archives. `make node-test` and `make run-node` do this themselves.
node-binaries: binaries
	$(BIN)/python -c "from kubemint.devcluster.node.binaries import resolve_node_binaries as r; \
	  from kubemint.devcluster.node.images import node_images as i; print(i(r()))"

# helm for the chart tests: $HELM if set, else built once from tests/envtest/helm.
helm: setup
	$(BIN)/python -c "from kubemint.devcluster.helm import resolve_helm; print(resolve_helm())"

# Prometheus for the monitoring tests (promtool check/test rules on the chart's alerts; a real
# prometheus evaluating every alert and dashboard query): $PROMETHEUS_BINARIES if set, else
# built once from tests/envtest/prometheus into ~/.cache/kubemint/prometheus (minutes cold).
prometheus: setup
	$(BIN)/python -m kubemint.devcluster.prometheus

# nginx for the forward-auth test through a real proxy (tests/integration/
# test_nginx_forward_auth.py): installed with apt-get when missing (Debian's `nginx` package
# carries the binary and auth_request; run as root). The test starts its own nginx on 127.0.0.1.
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx \
	  || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null 2>&1 \
	      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx >/dev/null 2>&1) \
	  || { echo "nginx could not be installed: install it (e.g. apt-get install nginx) and retry"; exit 1; }

lint: setup
	$(BIN)/ruff check operator tests bench examples
	$(BIN)/ruff format --check operator tests bench examples
	$(BIN)/hadolint --failure-threshold style Dockerfile
	$(BIN)/lint-imports --no-cache

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: binaries nginx prometheus
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

# The node tier (tests/node): a real single-node cluster in namespaces of its own. Needs root
# (namespaces, mounts, cgroups); installs runc, containernetworking-plugins, nftables and
# iptables with apt-get when missing.
node-test: node-binaries
	$(BIN)/pytest tests/node $(PYTEST_ARGS)

# What `make test` builds, at once: the Go builds keep both cores busy while the image build
# mostly waits on apt and pip, so on a brand-new machine they overlap (kubemint's apt-get calls
# take turns, see devcluster/debian.py). Instant when everything is cached.
prerequisites: setup nginx
	$(MAKE) --no-print-directory -j3 -Oline binaries node-binaries helm prometheus image

# --durations: CI's log shows where the suite's time goes.
test: prerequisites lint typecheck
	$(BIN)/pytest --durations=25 $(PYTEST_ARGS)

run: binaries
	$(BIN)/kubemint dev up

run-node: node-binaries
	$(BIN)/kubemint dev up --node

# The chart for real (kubemint.devcluster.release): a node, the image built from the Dockerfile
# and imported under the chart's default name, `helm install charts/kubemint --wait`; prints
# KUBECONFIG and how to reach the token server; Ctrl-C removes everything.
run-cluster: node-binaries helm image
	$(BIN)/python -m kubemint.devcluster.release

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
	$(BIN)/python -m bench.assertion_bench $(ASSERTION_BENCH_ARGS)

# The revocation store on a real etcd + kube-apiserver: etcd growth per revocation and store
# latency for 2,000 revocations by one client, the previous hourly buckets vs the current
# store. See `python -m bench.revocation_bench --help`.
REVOCATION_BENCH_ARGS ?=
.PHONY: bench-revocation
bench: bench-revocation

bench-revocation: binaries
	$(BIN)/python -m bench.revocation_bench $(REVOCATION_BENCH_ARGS)

# Workload helpers through a real token-server outage (bench/outage_bench.py): failed attempts,
# recovery after the server's return, bad answers; default a 3-minute outage, 10-minute tokens.
.PHONY: bench-outage
bench: bench-outage

bench-outage: binaries
	$(BIN)/python -m bench.outage_bench $(BENCH_OUTAGE_ARGS)

# Node tier (bench/node_bench.py): time to a Ready node (median of --rounds fresh nodes), a
# Secret update's time to a pod's mounted file, teardown. Needs root, like `make node-test`.
NODE_BENCH_ARGS ?=
.PHONY: bench-node

bench-node: node-binaries
	$(BIN)/python -m bench.node_bench $(NODE_BENCH_ARGS)

# The token server's view at scale (bench/scale_bench.py), then the operator at the same size
# (bench/operator_bench.py): one command reports every figure of issue 10's "Scale" section.
SCALE_BENCH_ARGS ?=
SCALE_OPERATOR_ARGS ?= --clients 10000 --namespaces 100 --rules 500 --rounds 1 --timeout 900
.PHONY: bench-scale

bench-scale: binaries
	@command -v wrk >/dev/null 2>&1 \
	  || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 \
	  || echo "wrk could not be installed: bench-scale uses its Python load generator"
	$(BIN)/python -m bench.scale_bench $(SCALE_BENCH_ARGS)
	$(BIN)/python -m bench.operator_bench $(SCALE_OPERATOR_ARGS)

# Container image (Dockerfile): its runtime dependencies, hash-locked for CPython 3.11 on Linux
# (one resolution serves x86_64 and aarch64; the hashes cover every file of each pinned version).
# image-lock resolves pyproject.toml's [project].dependencies with pip-tools in a throwaway venv,
# keeping pins that still fit (IMAGE_LOCK_ARGS=--upgrade moves all to the newest allowed).
# image-check installs the lock as the Dockerfile does, into a throwaway venv, and runs the
# commands the chart runs; then it fetches the locked wheels for x86_64 and aarch64 (glibc <=
# 2.36, Debian bookworm) with their hashes checked: no package needs a compiler on either.
IMAGE_PYTHON ?= python3.11
IMAGE_LOCK := requirements/image.txt
IMAGE_LOCK_ARGS ?=
.PHONY: image image-lock image-check

# The image itself, without Docker or a registry (kubemint.devcluster.image): a Debian base made
# by mmdebstrap, then `buildah bud --isolation chroot` of the unchanged Dockerfile on it, pushed to
# an OCI archive named docker.io/kubemint/kubemint:<appVersion> (what the chart runs) in
# ~/.cache/kubemint/images. Installs mmdebstrap and buildah with apt-get when missing (as root).
# Cached by content: rebuilt only when the Dockerfile, the lock or the source change.
image: setup
	$(BIN)/python -m kubemint.devcluster.image

image-lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	mkdir -p $(dir $(IMAGE_LOCK)); \
	if [ -f $(IMAGE_LOCK) ]; then cp $(IMAGE_LOCK) "$$tmp/image.txt"; fi; \
	$(IMAGE_PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install --quiet --disable-pip-version-check 'pip-tools==7.6.2'; \
	CUSTOM_COMPILE_COMMAND="make image-lock" "$$tmp/venv/bin/pip-compile" --quiet \
	  --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	  --no-emit-trusted-host --cache-dir "$$tmp/cache" $(IMAGE_LOCK_ARGS) \
	  --output-file "$$tmp/image.txt" pyproject.toml; \
	{ echo "# Runtime dependencies of the container image (Dockerfile): pinned, with the hashes"; \
	  echo "# of every file of each version, for CPython 3.11 on Linux x86_64 and aarch64."; \
	  echo "# Installed with pip install --require-hashes --no-deps. Do not edit by hand:"; \
	  echo "# regenerate with 'make image-lock' after changing [project].dependencies in"; \
	  echo "# pyproject.toml (IMAGE_LOCK_ARGS=--upgrade for the newest), then 'make image-check'."; \
	  cat "$$tmp/image.txt"; } > $(IMAGE_LOCK)

image-check:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	mkdir "$$tmp/src"; cp -R pyproject.toml README.md operator "$$tmp/src/"; \
	find "$$tmp/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +; \
	$(IMAGE_PYTHON) -m venv "$$tmp/kubemint"; \
	"$$tmp/kubemint/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
	  --require-hashes --no-deps -r $(IMAGE_LOCK); \
	"$$tmp/kubemint/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
	  --no-deps "$$tmp/src"; \
	"$$tmp/kubemint/bin/pip" check; \
	(cd "$$tmp" \
	  && "$$tmp/kubemint/bin/python" -c "import kubemint.controller.main, kubemint.server.main" \
	  && "$$tmp/kubemint/bin/kubemint" --version \
	  && "$$tmp/kubemint/bin/kubemint" operator --help >/dev/null \
	  && "$$tmp/kubemint/bin/kubemint" token-server --help >/dev/null); \
	for arch in x86_64 aarch64; do \
	  platforms="--platform manylinux2014_$$arch"; \
	  for v in $$(seq 17 36); do \
	    platforms="$$platforms --platform manylinux_2_$${v}_$$arch"; done; \
	  "$$tmp/kubemint/bin/pip" download --quiet --disable-pip-version-check --no-cache-dir \
	    --no-deps --require-hashes --only-binary=:all: --implementation cp --python-version 3.11 \
	    --abi cp311 $$platforms -d "$$tmp/wheels-$$arch" -r $(IMAGE_LOCK); \
	  echo "image-check: $$(ls "$$tmp/wheels-$$arch" | wc -l) wheels for $$arch, hashes match"; \
	done; \
	echo "image-check: the lock installs and kubemint runs"

# docs/crd-reference.md from crds/*.yaml (a unit test fails when it is stale).
docs: setup
	$(BIN)/python -m kubemint.api.reference docs/crd-reference.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
