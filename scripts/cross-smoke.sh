#!/bin/sh
# Smoke test for a cross-built rkite (make cross): run it under a user-mode
# emulator and check --version, --help and one real tunnel on loopback.
#
#   scripts/cross-smoke.sh BINARY [RUNNER]
#
# RUNNER defaults to qemu-aarch64; pass "" to run BINARY natively (a quick
# check of the script itself with an x86_64 build). The tunnel: an origin
# (python3 -m http.server on 127.0.0.1, a free port), an rkite frontend on
# 127.0.0.1 (--ports=0: the kernel picks the port, read back from its
# "listening on" log line), an rkite backend that registers smoke.test, and
# curl with Host: smoke.test through the frontend; the body must be the
# origin's file, byte for byte. Every wait is bounded; all processes stop
# when the script ends.
set -eu

BIN=${1:?usage: cross-smoke.sh BINARY [RUNNER]}
RUNNER=${2-qemu-aarch64}
READY_SECS=${SMOKE_READY_SECS:-60}  # emulated startup can be slow on a loaded machine
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rkite-cross-smoke.XXXXXX")
PIDS=""
cleanup() {
    status=$?
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        for f in "$WORK"/*.log; do
            [ -f "$f" ] && { echo "== $f" >&2; cat "$f" >&2; }
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "cross-smoke: FAIL: $*" >&2; exit 1; }
run() { if [ -n "$RUNNER" ]; then "$RUNNER" "$BIN" "$@"; else "$BIN" "$@"; fi; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_for FILE TEXT SECONDS: poll FILE every 0.1 s until it holds TEXT.
wait_for() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -le $(($3 * 10)) ] || fail "timed out after $3 s waiting for '$2' in $1"
        sleep 0.1
    done
}

[ -x "$BIN" ] || fail "$BIN is not an executable file"
if [ -n "$RUNNER" ]; then
    command -v "$RUNNER" >/dev/null 2>&1 || fail "$RUNNER not installed (Debian: qemu-user)"
fi
echo "cross-smoke: $(file -b "$BIN" 2>/dev/null || echo "$BIN")"

# --version and --help
version=$(run --version) || fail "--version exited with $?"
case "$version" in
    "rkite "*) echo "cross-smoke: --version: $version" ;;
    *) fail "--version printed '$version'" ;;
esac
run --help >"$WORK/help.txt" 2>&1 || fail "--help exited with $?"
grep -q -- "--isfrontend" "$WORK/help.txt" || fail "--help does not mention --isfrontend"
grep -q -- "--service_on" "$WORK/help.txt" || fail "--help does not mention --service_on"
echo "cross-smoke: --help: $(wc -l <"$WORK/help.txt") lines"

# A tunnel: origin <- backend == tunnel == frontend <- curl.
BODY="rkite cross smoke $$ $(date +%s)"
mkdir -p "$WORK/www"
printf '%s\n' "$BODY" >"$WORK/www/index.html"
ORIGIN_PORT=$(free_port)
python3 -m http.server "$ORIGIN_PORT" --bind 127.0.0.1 --directory "$WORK/www" \
    >"$WORK/origin.log" 2>&1 &
PIDS="$PIDS $!"
i=0
until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$ORIGIN_PORT/"; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "the origin on 127.0.0.1:$ORIGIN_PORT did not start"
    sleep 0.1
done

SECRET="smoke-$$"
run --isfrontend --host=127.0.0.1 --ports=0 --protos=http \
    --domain="http:smoke.test:$SECRET" >"$WORK/frontend.log" 2>&1 &
PIDS="$PIDS $!"
wait_for "$WORK/frontend.log" "listening on 127.0.0.1:" "$READY_SECS"
FE_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$WORK/frontend.log" | head -n 1)
[ -n "$FE_PORT" ] || fail "no port in the frontend's 'listening on' line"

run --frontend="127.0.0.1:$FE_PORT" \
    --service_on="http:smoke.test:127.0.0.1:$ORIGIN_PORT:$SECRET" >"$WORK/backend.log" 2>&1 &
PIDS="$PIDS $!"
wait_for "$WORK/backend.log" "kite .*smoke.test.* is live" "$READY_SECS"

got=$(curl -sS --max-time 20 -H 'Host: smoke.test' "http://127.0.0.1:$FE_PORT/index.html") ||
    fail "curl through the frontend on 127.0.0.1:$FE_PORT failed"
[ "$got" = "$BODY" ] || fail "body through the tunnel was '$got', want '$BODY'"
echo "cross-smoke: tunnel 127.0.0.1:$FE_PORT -> 127.0.0.1:$ORIGIN_PORT: body OK"
echo "cross-smoke: PASS ($BIN${RUNNER:+ under $RUNNER})"
