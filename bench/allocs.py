#!/usr/bin/env python3
"""Proves the relay path allocates nothing per chunk in steady state.

Builds rkite with the `count-allocs` feature (a counting global allocator
whose total appears in the SIGUSR2 stats line), relays a warm-up download and
then a measured one through a frontend and a backend on 127.0.0.1, and
reports the allocations each process made per 16 KiB chunk relayed during
the measured download. Run by `make bench`; loopback only, bounded in time.
"""
import os, re, signal, socket, subprocess, sys, tempfile, threading, time, http.server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "count-allocs")
SIZE = int(os.environ.get("ALLOCS_BYTES", str(256 * 1024 * 1024)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[-1])
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        block = b"\x5a" * 65536
        while n > 0:
            take = min(n, len(block))
            self.wfile.write(block[:take])
            n -= take

    def log_message(self, *args):
        pass


class Proc:
    def __init__(self, args):
        self.lines = []
        self.p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append(line.rstrip())

    def wait_for(self, needle, count=1, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            if sum(needle in l for l in self.lines) >= count:
                return [l for l in self.lines if needle in l][count - 1]
            time.sleep(0.02)
        raise SystemExit(f"timed out waiting for {needle!r}:\n" + "\n".join(self.lines[-20:]))

    def allocs(self):
        n = sum("stats:" in l for l in self.lines)
        self.p.send_signal(signal.SIGUSR2)
        line = self.wait_for("stats:", n + 1)
        return int(re.search(r"allocs=(\d+)", line).group(1))

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def main():
    subprocess.run(
        ["cargo", "build", "--release", "--features", "count-allocs", "--target-dir", TARGET],
        cwd=ROOT, check=True)
    binary = os.path.join(TARGET, "release", "rkite")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    fe = Proc([binary, "--isfrontend", "--host=127.0.0.1", f"--ports={port}",
               "--domain=http:allocs.test:s3cret"])
    fe.wait_for("listening on")
    be = Proc([binary, f"--frontend=127.0.0.1:{port}",
               f"--service_on=http:allocs.test:127.0.0.1:{server.server_address[1]}:s3cret"])
    try:
        be.wait_for("is live")
        url = f"http://127.0.0.1:{port}/bytes/"

        def fetch(n):
            subprocess.run(["curl", "-sS", "--max-time", "120", "-o", "/dev/null",
                            "-H", "Host: allocs.test", url + str(n)], check=True)

        fetch(SIZE // 4)  # warm-up: pools, buffers and tables reach their size
        before = (fe.allocs(), be.allocs())
        fetch(SIZE)
        after = (fe.allocs(), be.allocs())
        chunks = SIZE / (16 * 1024)
        for name, b, a in (("frontend", before[0], after[0]), ("backend", before[1], after[1])):
            print(f"{name}: {a - b} allocations while relaying {SIZE >> 20} MiB "
                  f"({chunks:.0f} chunks): {(a - b) / chunks:.4f} per chunk")
    finally:
        be.stop()
        fe.stop()
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
