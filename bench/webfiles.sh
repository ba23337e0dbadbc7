#!/bin/sh
# The built-in file server's throughput and CPU per GiB, beside nginx on the
# same file: (1) curl straight from nginx, (2) nginx as the origin of a plain
# http kite through an rkite frontend and backend, (3) rkite's own `builtin`
# kite through the same pair. Everything on 127.0.0.1, free ports, one run per
# case after a warm-up. CPU is the processes' utime+stime from /proc (the
# frontend and backend, and nginx where it serves). Usage:
#   bench/webfiles.sh [RKITE_BINARY] [SIZE_MIB]
# (default: target/release/rkite, 1024 MiB). Needs curl and nginx.
set -eu
BIN=${1:-target/release/rkite}
MIB=${2:-1024}
DIR=$(mktemp -d /tmp/rkite-webbench.XXXXXX)
trap 'kill $PIDS 2>/dev/null || true; rm -rf "$DIR"' EXIT
PIDS=""
head -c $((MIB * 1024 * 1024)) /dev/urandom > "$DIR/big.bin"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { # utime+stime of the given pids, in clock ticks
  t=0; for p in "$@"; do set -- $(cut -d' ' -f14,15 /proc/$p/stat); t=$((t + $1 + $2)); done; echo $t; }
wait_log() { i=0; until grep -q "$2" "$1" 2>/dev/null; do i=$((i+1)); [ $i -lt 500 ] || { echo "timeout: $2"; exit 1; }; sleep 0.02; done; }

NGX=$(port); FE=$(port)
mkdir -p "$DIR/ngx"
cat > "$DIR/ngx/nginx.conf" <<EOF
worker_processes 1; daemon off; master_process off; pid $DIR/ngx/nginx.pid;
error_log $DIR/ngx/error.log; events { worker_connections 64; }
http { access_log off; sendfile on; server { listen 127.0.0.1:$NGX; root $DIR; } }
EOF
nginx -p "$DIR/ngx" -c "$DIR/ngx/nginx.conf" & NPID=$!; PIDS="$PIDS $NPID"
"$BIN" --isfrontend --host=127.0.0.1 --ports=$FE --domain='http:*.bench.test:s' 2>"$DIR/fe.log" & FPID=$!; PIDS="$PIDS $FPID"
wait_log "$DIR/fe.log" "listening on"
"$BIN" --frontend=127.0.0.1:$FE --service_on=http:origin.bench.test:127.0.0.1:$NGX:s \
  --service_on=http:files.bench.test:localhost:builtin:s --webpath="files.bench.test:/:public:$DIR" \
  2>"$DIR/be.log" & BPID=$!; PIDS="$PIDS $BPID"
wait_log "$DIR/be.log" "kite http:files.bench.test is live"
wait_log "$DIR/be.log" "kite http:origin.bench.test is live"
HZ=$(getconf CLK_TCK)

run() { # name url host pids...
  name=$1; url=$2; host=$3; shift 3
  curl -s -o /dev/null -H "Host: $host" "$url"   # warm-up (page cache, buffers)
  before=$(ticks "$@")
  speed=$(curl -s -o /dev/null -w '%{speed_download}' -H "Host: $host" "$url")
  after=$(ticks "$@")
  python3 - "$name" "$speed" "$before" "$after" "$HZ" "$MIB" <<'EOF'
import sys
name, speed, b, a, hz, mib = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
cpu = (a - b) / hz / (mib / 1024)
print(f"| {name} | {speed / 1e6:.0f} | {cpu:.2f} |")
EOF
}
echo "| path ($MIB MiB file) | MB/s | CPU s/GiB (servers) |"
echo "|---|---:|---:|"
run "nginx direct" "http://127.0.0.1:$NGX/big.bin" x $NPID
run "nginx via rkite tunnel" "http://127.0.0.1:$FE/big.bin" origin.bench.test $NPID $FPID $BPID
run "rkite builtin via tunnel" "http://127.0.0.1:$FE/big.bin" files.bench.test $FPID $BPID
echo "backend peak RSS: $(grep VmHWM /proc/$BPID/status | tr -s ' ')"
