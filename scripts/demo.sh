#!/bin/sh
# make demo: a frontend, a backend and a small origin on loopback; fetch a
# page through the relay, print it, and (on a terminal) keep everything up
# for a browser until Ctrl-C. Every process stops when the script ends.
set -eu
RKITE=${1:-target/release/rkite}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rkite-demo.XXXXXX")
PIDS=""
cleanup() {
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() { # file text seconds
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt $(($3 * 10)) ]; then
            echo "demo: timed out waiting for '$2' in $1:" >&2
            cat "$1" >&2
            exit 1
        fi
        sleep 0.1
    done
}

ORIGIN_PORT=$(free_port)
FE_PORT=$(free_port)
mkdir -p "$WORK/www"
cat > "$WORK/www/index.html" <<HTML
<html><body><h1>Hello from behind the kite</h1>
<p>This page is served by a local server on 127.0.0.1:$ORIGIN_PORT, reached through an rkite
backend and an rkite frontend on 127.0.0.1:$FE_PORT.</p></body></html>
HTML

python3 -m http.server "$ORIGIN_PORT" --bind 127.0.0.1 --directory "$WORK/www" >"$WORK/origin.log" 2>&1 &
PIDS="$PIDS $!"
i=0
until curl -s -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/"; do
    i=$((i + 1))
    [ "$i" -le 100 ] || { echo "demo: the origin server did not start" >&2; cat "$WORK/origin.log" >&2; exit 1; }
    sleep 0.1
done
"$RKITE" --isfrontend --host=127.0.0.1 --ports="$FE_PORT" --protos=http,websocket \
    --domain='http,websocket:demo.localhost:demo-secret' >"$WORK/frontend.log" 2>&1 &
PIDS="$PIDS $!"
wait_for "$WORK/frontend.log" "listening on" 10
"$RKITE" --frontend="127.0.0.1:$FE_PORT" \
    --service_on="http:demo.localhost:127.0.0.1:$ORIGIN_PORT:demo-secret" >"$WORK/backend.log" 2>&1 &
PIDS="$PIDS $!"
wait_for "$WORK/backend.log" "is live" 20

echo "== frontend log"; cat "$WORK/frontend.log"
echo "== backend log"; cat "$WORK/backend.log"
echo "== curl -H 'Host: demo.localhost' http://127.0.0.1:$FE_PORT/"
curl -sS --max-time 10 -H 'Host: demo.localhost' "http://127.0.0.1:$FE_PORT/"
echo
echo "Open http://demo.localhost:$FE_PORT/ in a browser (*.localhost names resolve to this machine)."
if [ -t 0 ]; then
    echo "Press Ctrl-C to stop the demo."
    while :; do sleep 3600; done
fi
