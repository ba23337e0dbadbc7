# rkite: build, test, demo, bench, lint. `make test` installs the peers the
# tests need (Debian's pagekite, curl, openssl, python3) when they are missing.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# command:package pairs the tests and the demo need.
TEST_DEPS := curl:curl openssl:openssl pagekite:pagekite python3:python3 socat:socat nginx:nginx tinyproxy:tinyproxy microsocks:microsocks haproxy:haproxy \
	autoreconf:autoconf automake:automake libtoolize:libtool pkg-config:pkg-config cc:gcc make:make \
	ip:iproute2 unshare:util-linux prometheus:prometheus pebble:pebble dnsmasq:dnsmasq
# header:package pairs: the C libraries tests/e2e/pagekitec.rs builds libpagekite against.
TEST_HEADERS := /usr/include/ev.h:libev-dev /usr/include/openssl/ssl.h:libssl-dev
DEMO_DEPS := curl:curl python3:python3

.PHONY: all build release test lint deps demo bench clean fuzz fuzz-cmin

all: build

build:
	$(CARGO) build --release
	@ls -l target/release/rkite

release: build

# Debian starts a package's service when it installs it (nginx, prometheus); the
# tests run their own. A policy-rc.d that says no (exit 101) while apt runs stops
# that; it is removed again unless it was there before.
define install_missing
	@missing=""; \
	for pair in $(1); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  made=""; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && \
	    $(SUDO) chmod 755 /usr/sbin/policy-rc.d && made=1; \
	  fi; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  status=$$?; \
	  if [ -n "$$made" ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
	  exit $$status; \
	fi
endef

deps:
	$(call install_missing,$(TEST_DEPS))
	@missing=""; for pair in $(TEST_HEADERS); do \
	  [ -f $${pair%%:*} ] || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	@# Debian starts nginx on port 80 when it installs it; the tests run their own.
	@if pgrep -x nginx >/dev/null 2>&1 && [ -x /etc/init.d/nginx ]; then $(SUDO) /etc/init.d/nginx stop >/dev/null 2>&1 || true; fi
	@# Likewise haproxy (on its packaged config); the tests start their own.
	@if pgrep -x haproxy >/dev/null 2>&1 && [ -x /etc/init.d/haproxy ]; then $(SUDO) /etc/init.d/haproxy stop >/dev/null 2>&1 || true; fi
	@python3 -c 'import websockets' 2>/dev/null || /usr/bin/python3 -c 'import websockets' 2>/dev/null || \
	  { echo "installing: python3-websockets"; $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-websockets; }

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	@if grep -rnE '(mio|rustls)::|Tcp(Stream|Listener)|UdpSocket|SystemTime::now|std::thread' src/proto; then \
	  echo "src/proto must stay sans-IO (no sockets, no clock, no TLS)"; exit 1; fi

# `static` first: tests/static_bin.rs runs dist/rkite-<target> in an empty chroot.
# The e2e suite runs twice: as shipped (plain hops splice, issue 15) and with
# RKITE_SPLICE=off, so the copying path stays tested end to end too.
test: deps lint static
	$(CARGO) test --all-targets
	RKITE_SPLICE=off $(CARGO) test --test e2e

demo:
	$(call install_missing,$(DEMO_DEPS))
	$(CARGO) build --release
	sh scripts/demo.sh target/release/rkite

# make static: a fully static release binary in dist/rkite-<target>, which must be
# at most STATIC_MAX_BYTES (2 MiB). The target is x86_64-unknown-linux-musl: rustup
# adds it and apt installs musl-tools when missing, and ring's C and assembly are
# compiled with musl-gcc (with cc when musl-gcc cannot be had; ring needs no libc
# headers beyond the compiler's own). Rust links it self-contained (its own musl
# libc.a and crt objects), so no linker setting is needed. When rustup cannot
# provide the musl target (no rustup, offline), the fallback is glibc with
# -C target-feature=+crt-static for x86_64-unknown-linux-gnu; that binary is about
# 2.6 MiB, so it fails the size check unless STATIC_MAX_BYTES is raised.
#
# Smaller still (about 730 KiB less): std itself rebuilt for size with the nightly
# toolchain's rust-src, without std's backtrace symbolizer, and with the
# immediate-abort panic strategy (a panic, which would be a bug, aborts at once
# without printing its message: about 180 KiB of formatting and unwinding glue
# gone; bench/size.md). Used when `cargo +nightly` is there and rustup can give
# it rust-src and the musl target; otherwise the stable build above, which
# prints panic messages. `make static STATIC_STD=stable` forces the stable build.
# Nothing unwinds under immediate-abort, so the build-std build also drops the
# unwind tables (-Cforce-unwind-tables=no for Rust, -fno-asynchronous-unwind-tables
# for ring's C: .eh_frame was 250 KB), builds std with its optimize_for_size
# feature (smaller sort, integer formatting) and without panic locations
# (-Zlocation-detail=none); bench/size.md has each one's saving.
# The build-std build also links with -z pack-relative-relocs (DT_RELR: the
# static-pie's 48 KB of R_X86_64_RELATIVE entries become a 512-byte bitmap,
# −45 KB; the binary stays position-independent, so ASLR is kept). The static-pie
# start code of Rust's self-contained musl (1.2.5; DT_RELR since 1.2.4) applies
# them; GNU ld before 2.38 ignores the option with a warning. It also derives
# Debug shallowly (-Zfmt-debug=shallow: variant names only, −12 KB): every log
# line that printed a derived Debug with data now prints the same words by hand
# (net.rs, netlink.rs, public.rs, tls_text.rs for rustls' error texts).
# And it drops the unwind tables musl's libc.a and ring's assembly still
# bring (scripts/no-eh-frame.ld, an addition to ld's default script; nothing
# in this build unwinds): 4.7 KB, which took the binary under 1.5 MiB.
STATIC_STD ?= build-std
BUILD_STD := -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
BUILD_STD_RUSTFLAGS := -Zunstable-options -Cpanic=immediate-abort -Cforce-unwind-tables=no -Zlocation-detail=none -Zfmt-debug=shallow -Clink-arg=-Wl,-z,pack-relative-relocs -Clink-arg=-Wl,-T,$(CURDIR)/scripts/no-eh-frame.ld
BUILD_STD_CFLAGS := -fno-asynchronous-unwind-tables -fno-unwind-tables
nightly_std_ready = { $(CARGO) +nightly --version >/dev/null 2>&1 && \
	  { rustup component list --toolchain nightly --installed 2>/dev/null | grep -qx rust-src || \
	    timeout 300 rustup component add rust-src --toolchain nightly; } && \
	  { rustup target list --toolchain nightly --installed 2>/dev/null | grep -qx $(STATIC_TARGET) || \
	    timeout 300 rustup target add $(STATIC_TARGET) --toolchain nightly; }; } >/dev/null 2>&1
STATIC_TARGET := x86_64-unknown-linux-musl
STATIC_FALLBACK := x86_64-unknown-linux-gnu
STATIC_MAX_BYTES ?= 2097152

# check_static FILE: prints its type and size; fails unless it is statically
# linked and at most STATIC_MAX_BYTES bytes.
define check_static
	@f=$(1); desc=$$(file -b $$f); echo "$$f: $$desc"; \
	case "$$desc" in *"statically linked"*|*"static-pie linked"*) ;; \
	  *) echo "$$f is not statically linked"; exit 1;; esac; \
	awk -v f=$$f -v s=$$(wc -c <$$f) -v max=$(STATIC_MAX_BYTES) 'BEGIN { \
	  printf "%s: %d bytes (%.3f MiB); limit %d bytes (%.3f MiB)\n", f, s, s / 1048576, max, max / 1048576; \
	  if (s > max) { print f " is over the size limit"; exit 1 } }'
endef

.PHONY: static cross
static:
	$(call install_missing,file:file)
	@set -e; target=$(STATIC_TARGET); flags=""; \
	if ! rustup target list --installed 2>/dev/null | grep -qx $(STATIC_TARGET) && \
	   ! rustup target add $(STATIC_TARGET); then \
	  target=$(STATIC_FALLBACK); flags="-C target-feature=+crt-static"; \
	  echo "static: no $(STATIC_TARGET) target; falling back to glibc $$flags"; \
	else \
	  command -v musl-gcc >/dev/null 2>&1 || { echo "installing: musl-tools"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends musl-tools; } || \
	    echo "static: musl-tools not installed; ring's C is compiled with cc"; \
	  if command -v musl-gcc >/dev/null 2>&1; then export CC_x86_64_unknown_linux_musl=musl-gcc; fi; \
	fi; \
	out=$${CARGO_TARGET_DIR:-target}/$$target/release/rkite; \
	if [ "$$target" = $(STATIC_TARGET) ] && [ "$(STATIC_STD)" = build-std ] && $(call nightly_std_ready); then \
	  echo "RUSTFLAGS='$(BUILD_STD_RUSTFLAGS)' CFLAGS_$(subst -,_,$(STATIC_TARGET))='$(BUILD_STD_CFLAGS)' $(CARGO) +nightly build --release --target $$target $(BUILD_STD)"; \
	  CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-target}/build-std RUSTFLAGS="$${RUSTFLAGS:-} $(BUILD_STD_RUSTFLAGS)" \
	  CFLAGS_x86_64_unknown_linux_musl="$${CFLAGS_x86_64_unknown_linux_musl:-} $(BUILD_STD_CFLAGS)" \
	    $(CARGO) +nightly build --release --target $$target $(BUILD_STD); \
	  out=$${CARGO_TARGET_DIR:-target}/build-std/$$target/release/rkite; \
	else \
	  echo "$(CARGO) build --release --target $$target $${flags:+(RUSTFLAGS=$$flags)}"; \
	  RUSTFLAGS="$${RUSTFLAGS:-} $$flags" $(CARGO) build --release --target $$target; \
	fi; \
	mkdir -p dist; cp $$out dist/rkite-$$target; \
	ldd dist/rkite-$$target 2>&1 | grep -Eq 'statically linked|not a dynamic executable' || \
	  { echo "ldd: dist/rkite-$$target has dynamic dependencies:"; ldd dist/rkite-$$target; exit 1; }; \
	dist/rkite-$$target --version; \
	echo dist/rkite-$$target > dist/.static-binary
	$(call check_static,$$(cat dist/.static-binary))

# make cross: aarch64-unknown-linux-musl into dist/rkite-aarch64-unknown-linux-musl,
# then scripts/cross-smoke.sh runs it under qemu-user (--version, --help, a real
# loopback tunnel). Debian's gcc-aarch64-linux-gnu is the linker (with Rust's
# self-contained musl libc and crt objects) and compiles ring's C and assembly.
#
# mips/mipsel (most OpenWrt routers) are tier-3 Rust targets with no rustup
# std, so they are not built here: the OpenWrt SDK builds them. Its
# feeds/packages lang/rust package builds a rustc with the
# mips(el)-unknown-linux-musl std from source, and a package Makefile that
# includes rust-package.mk runs cargo with the SDK's musl toolchain as linker and
# as CC (which compiles ring) for the router's target; see openwrt/README.md.
CROSS_TARGET := aarch64-unknown-linux-musl
CROSS_DEPS := aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu qemu-aarch64:qemu-user \
	file:file curl:curl python3:python3
cross:
	$(call install_missing,$(CROSS_DEPS))
	@# ring's C needs the target's libc headers, which the cross gcc only recommends.
	@[ -e /usr/aarch64-linux-gnu/include/stdint.h ] || { echo "installing: libc6-dev-arm64-cross"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    libc6-dev-arm64-cross; }
	@rustup target list --installed | grep -qx $(CROSS_TARGET) || rustup target add $(CROSS_TARGET)
	CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
	AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
	  $(CARGO) build --release --target $(CROSS_TARGET)
	@mkdir -p dist && cp $${CARGO_TARGET_DIR:-target}/$(CROSS_TARGET)/release/rkite dist/rkite-$(CROSS_TARGET)
	$(call check_static,dist/rkite-$(CROSS_TARGET))
	sh scripts/cross-smoke.sh dist/rkite-$(CROSS_TARGET) qemu-aarch64

# make bench: the codec micro-bench, then bench/harness.py against direct loopback,
# HAProxy (two chained instances, with and without splicing), pagekite.py, rathole and
# bore, with rkite's plain tunnel splicing and copying (RKITE_SPLICE=on/off), which
# writes bench/RESULTS.md, then bench/hostile.py
# (floods and one tenant exhausting the buffers), bench/pagekitec.py (a libpagekite
# backend through rkite and pagekite.py) and bench/proxy.py (the tunnel through
# tinyproxy and microsocks), which append to it (bench/README.md).
# The harness installs its own peers; BENCH_ARGS=--quick gives a short smoke run.
BENCH_DEPS := python3:python3 curl:curl nginx:nginx haproxy:haproxy tinyproxy:tinyproxy microsocks:microsocks
BENCH_ARGS ?=
# The binary measured is the one users run: the static build of `make static`.
bench: static
	$(call install_missing,$(BENCH_DEPS))
	$(CARGO) bench --bench frame > target/bench-frame.txt
	@cat target/bench-frame.txt
	python3 bench/harness.py --rkite $$(cat dist/.static-binary) --codec target/bench-frame.txt $(BENCH_ARGS)
	python3 bench/hostile.py --rkite $$(cat dist/.static-binary)
	python3 bench/pagekitec.py --rkite $$(cat dist/.static-binary)
	python3 bench/proxy.py --rkite $$(cat dist/.static-binary)

# make fuzz: every cargo-fuzz target in fuzz/fuzz_targets for FUZZ_SECONDS
# each (libFuzzer, nightly; cargo-fuzz is installed when missing), starting
# from the committed corpora in fuzz/corpus/<target>, which stay untouched:
# new inputs go to fuzz/corpus-new/<target>, crashes to fuzz/artifacts/<target>
# (both ignored by git). `make test` replays fuzz/corpus on stable
# (tests/fuzz_corpus.rs). make fuzz-cmin folds corpus-new into the committed
# corpus, minimised with cargo fuzz cmin. The parsers have no unsafe code, so
# no sanitizer (twice the executions); -a keeps overflow checks on.
FUZZ_SECONDS ?= 60
# sniff_httparse (the sniffer against httparse) shares sniff's corpus.
FUZZ_TARGETS ?= frame handshake sniff sniff_httparse config acl_regex request_guard proxy dyndns webfiles tunnel netlink acme proxy_protocol
FUZZ_FLAGS := -O -a -s none
define fuzz_tools
	@command -v cargo-fuzz >/dev/null 2>&1 || { echo "installing: cargo-fuzz"; $(CARGO) install cargo-fuzz --locked; }
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
endef
fuzz:
	$(call fuzz_tools)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  c=$${t%_httparse}; mkdir -p fuzz/corpus-new/$$c; \
	  dict=; [ ! -f fuzz/$$t.dict ] || dict=-dict=fuzz/$$t.dict; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  $(CARGO) +nightly fuzz run $(FUZZ_FLAGS) $$t fuzz/corpus-new/$$c fuzz/corpus/$$c -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 $$dict; \
	done

fuzz-cmin:
	$(call fuzz_tools)
	@set -e; for t in $(filter-out sniff_httparse,$(FUZZ_TARGETS)); do \
	  mkdir -p fuzz/corpus/$$t; \
	  if [ -d fuzz/corpus-new/$$t ]; then cp -n fuzz/corpus-new/$$t/* fuzz/corpus/$$t/ 2>/dev/null || true; fi; \
	  $(CARGO) +nightly fuzz cmin $(FUZZ_FLAGS) $$t fuzz/corpus/$$t; \
	done

clean:
	$(CARGO) clean
