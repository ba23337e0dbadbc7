# rkite: build, test, demo, bench, lint. `make test` installs the peers the
# tests need (Debian's pagekite, curl, openssl, python3) when they are missing.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# command:package pairs the tests and the demo need.
TEST_DEPS := curl:curl openssl:openssl pagekite:pagekite python3:python3 socat:socat
DEMO_DEPS := curl:curl python3:python3

.PHONY: all build release test lint deps demo bench clean

all: build

build:
	$(CARGO) build --release
	@ls -l target/release/rkite

release: build

define install_missing
	@missing=""; \
	for pair in $(1); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,$(TEST_DEPS))
	@python3 -c 'import websockets' 2>/dev/null || /usr/bin/python3 -c 'import websockets' 2>/dev/null || \
	  { echo "installing: python3-websockets"; $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-websockets; }

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	@if grep -rnE '(mio|rustls)::|Tcp(Stream|Listener)|UdpSocket|SystemTime::now|std::thread' src/proto; then \
	  echo "src/proto must stay sans-IO (no sockets, no clock, no TLS)"; exit 1; fi

test: deps lint
	$(CARGO) test --all-targets

demo:
	$(call install_missing,$(DEMO_DEPS))
	$(CARGO) build --release
	sh scripts/demo.sh target/release/rkite

# make bench: the codec micro-bench, then bench/harness.py against direct loopback,
# pagekite.py, rathole and bore; writes bench/RESULTS.md (see bench/README.md).
# The harness installs its own peers; BENCH_ARGS=--quick gives a short smoke run.
BENCH_DEPS := python3:python3 curl:curl
BENCH_ARGS ?=
bench:
	$(call install_missing,$(BENCH_DEPS))
	$(CARGO) build --release
	$(CARGO) bench --bench frame > target/bench-frame.txt
	@cat target/bench-frame.txt
	python3 bench/harness.py --rkite target/release/rkite --codec target/bench-frame.txt $(BENCH_ARGS)

clean:
	$(CARGO) clean
