//! WebSockets through the relay, with a real client and server: Python's `websockets`
//! (Debian's python3-websockets; the test fails under CI=true if no python3 can import
//! it). The server greets each client, echoes every message, and closes with code 4000
//! when asked; it prints each close. Behind a `websocket` kite and behind a plain `http`
//! kite (the frontend falls back from websocket to http, §6.2) the client gets the
//! greeting, a text message and a 1 MiB binary message echoed intact, and the closing
//! handshake completes both when the client starts it (1000, seen by the server) and
//! when the server does (4000, seen by the client). A WebSocket left idle for a few
//! seconds (no pings on either side) still carries messages afterwards.

use super::{SECRET, live, raw_frontend};
use crate::fixture::{T, backend, kite};
use crate::util::Proc;

/// How long the idle WebSocket sits without a frame.
const IDLE_SECS: &str = "6";

const SERVER: &str = r#"
import asyncio, sys, websockets

async def handler(ws):
    await ws.send("welcome")
    try:
        async for msg in ws:
            if msg == "close-please":
                await ws.close(4000, "server says bye")
                print("server closed code=%s" % ws.close_code, flush=True)
                return
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    print("client closed code=%s" % ws.close_code, flush=True)

async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None,
                                ping_interval=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening on %d" % port, flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

const CLIENT: &str = r#"
import asyncio, os, sys, websockets

name, port, mode, idle = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])

def check(cond, what):
    if not cond:
        print("FAILED: " + what, flush=True)
        sys.exit(1)

async def main():
    uri = "ws://%s:%d/chat" % (name, port)
    async with websockets.connect(uri, host="127.0.0.1", port=port, max_size=None,
                                  ping_interval=None, compression=None,
                                  open_timeout=20, close_timeout=10) as ws:
        check(await ws.recv() == "welcome", "the server's greeting")
        await ws.send("hello over the kite")
        check(await ws.recv() == "hello over the kite", "text echo")
        blob = os.urandom(1 << 20)
        await ws.send(blob)
        got = await ws.recv()
        check(isinstance(got, bytes) and got == blob, "1 MiB binary echo")
        print("exchanged", flush=True)
        if idle > 0:
            await asyncio.sleep(idle)
            await ws.send("still there?")
            check(await ws.recv() == "still there?", "echo after idling")
            print("alive after idling", flush=True)
        if mode == "server-close":
            await ws.send("close-please")
            try:
                msg = await ws.recv()
                check(False, "expected a close, got %r" % (msg,))
            except websockets.ConnectionClosed:
                pass
            print("client saw close code=%s" % ws.close_code, flush=True)
        else:
            await ws.close()
            print("client sent close, code=%s" % ws.close_code, flush=True)
    print("OK", flush=True)

asyncio.run(asyncio.wait_for(main(), 60))
"#;

/// A python3 that can `import websockets`: `python3` from PATH, else Debian's
/// `/usr/bin/python3` (a PATH python, e.g. pyenv's, may lack Debian's modules). None
/// (and "SKIPPED") if neither can; under CI=true that fails the test.
fn ws_python() -> Option<&'static str> {
    for py in ["python3", "/usr/bin/python3"] {
        let probe = Proc::start("python3-probe", py, &["-c", "import websockets"], &[]);
        if probe.wait_exit(T).is_some_and(|s| s.success()) {
            return Some(py);
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("python3 with the websockets module missing under CI=true (python3-websockets)");
    }
    eprintln!("SKIPPED: no python3 can import websockets");
    None
}

/// The Python WebSocket echo server; returns it and its port.
fn ws_server(py: &str) -> (Proc, u16) {
    let server = Proc::start("ws-server", py, &["-c", SERVER], &[]);
    let line = server.wait_for("listening on ", T);
    let port = line
        .rsplit(' ')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (server, port)
}

/// Runs the client against `name` through the frontend on `port` and waits for its "OK".
fn ws_client(py: &str, port: u16, name: &str, mode: &str, idle: &str) -> Proc {
    let port = port.to_string();
    let client = Proc::start(
        &format!("ws-client-{mode}"),
        py,
        &["-c", CLIENT, name, &port, mode, idle],
        &[],
    );
    client.wait_for("OK", T + T);
    let status = client.wait_exit(T).expect("the client exits");
    assert!(status.success(), "ws client: {status}");
    client
}

/// A WebSocket server behind kite `proto:name`; both closing directions through it.
fn both_closes_through(proto: &str, name: &str) {
    let Some(py) = ws_python() else { return };
    let (server, ws_port) = ws_server(py);
    let (port, fe) = raw_frontend(&[]);
    let be = backend(port, &[kite(proto, name, ws_port, SECRET)], &[]);
    live(&be, &format!("{proto}:{name}"));
    live(&fe, &format!("{proto}:{name}"));

    let client = ws_client(py, port, name, "client-close", "0");
    assert!(client.contains("client sent close, code=1000"));
    server.wait_for("client closed code=1000", T);

    let client = ws_client(py, port, name, "server-close", "0");
    assert!(client.contains("client saw close code=4000"));
    server.wait_for("server closed code=4000", T);
}

#[test]
fn websocket_kite_carries_messages_and_both_closes() {
    both_closes_through("websocket", "ws.example.test");
}

#[test]
fn plain_http_kite_carries_a_websocket_too() {
    both_closes_through("http", "plain.example.test");
}

#[test]
fn an_idle_websocket_stays_open() {
    let Some(py) = ws_python() else { return };
    let (server, ws_port) = ws_server(py);
    let (port, fe) = raw_frontend(&[]);
    let be = backend(
        port,
        &[kite("websocket", "idle.example.test", ws_port, SECRET)],
        &[],
    );
    live(&be, "websocket:idle.example.test");
    live(&fe, "websocket:idle.example.test");
    let client = ws_client(py, port, "idle.example.test", "client-close", IDLE_SECS);
    assert!(client.contains("alive after idling"));
    server.wait_for("client closed code=1000", T);
}
