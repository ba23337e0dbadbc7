#!/usr/bin/env python3
"""rkite under attack, measured (issue 10): appends a section to bench/RESULTS.md.

1. Unauthenticated flood: FLOOD_CONNS connections to a frontend each send a
   tunnel request with an unsigned kite line, then in-band NOOP rounds with
   unsigned `X-PageKite:` lines, as fast as they can, for FLOOD_SECONDS.
   Measured: the frontend's peak RSS (VmHWM) and the bytes it logged, and
   whether a real tenant still gets pages during the flood.
2. Buffer exhaustion by one tenant: tenant A's visitors start big downloads
   and read nothing; tenant B's request latency (sequential keep-alive GETs)
   is measured idle and while A holds its buffers. Target: within 2x.

Everything runs on 127.0.0.1 with fresh ports; every loop is bounded in count
and time. Usage: bench/hostile.py --rkite PATH [--out bench/RESULTS.md]
"""

import argparse
import multiprocessing
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

FLOOD_SECONDS = 10
FLOOD_CONNS = 50
HOGS = 80
LATENCY_REQUESTS = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def wait_log(path, needle, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path, "rb") as f:
            if needle.encode() in f.read():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{path}: no {needle!r}")


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Run:
    def __init__(self, rkite, work):
        self.rkite = rkite
        self.work = work
        self.procs = []

    def start(self, name, args):
        log = os.path.join(self.work, name + ".log")
        out = open(log, "wb")
        env = dict(os.environ, RUST_LOG="info")
        p = subprocess.Popen([self.rkite] + args, stdout=out, stderr=out, env=env)
        self.procs.append(p)
        return p, log

    def nginx(self, big_mib):
        port = free_port()
        d = os.path.join(self.work, f"nginx-{port}")
        os.makedirs(d)
        with open(os.path.join(d, "big"), "wb") as f:
            f.truncate(big_mib << 20)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                f"daemon off; master_process off; worker_processes 1; pid {d}/pid;\n"
                f"error_log stderr;\nevents {{ worker_connections 512; }}\n"
                f"http {{ access_log off; default_type text/plain; sendfile on;\n"
                f"  client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n"
                f"  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n"
                f"  server {{ listen 127.0.0.1:{port}; root {d};\n"
                f"    location = / {{ return 200 \"hello\\n\"; }} }} }}\n"
            )
        p = subprocess.Popen(
            ["nginx", "-p", d, "-c", conf, "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(p)
        wait_port(port)
        return port

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []


def get_keepalive(sock, host, path="/"):
    """One GET on a keep-alive socket; returns the status (reads the body)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(4096)
        if not piece:
            raise RuntimeError("closed")
        buf += piece
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1])


def latencies(port, host, n):
    s = socket.create_connection(("127.0.0.1", port), 10)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        status = get_keepalive(s, host)
        out.append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise RuntimeError(f"{host}: status {status}")
    s.close()
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.99) - 1]


def flood_worker(port, stop, counts):
    kite = "X-PageKite: http:flood.test:0123456789abcdef::00000000\r\n"
    request = (
        "CONNECT PageKite:1 HTTP/1.0\r\nX-PageKite-Features: AddKites\r\n"
        "X-PageKite-Version: flood\x1b[31m\r\n" + kite + "\r\n"
    ).encode()
    payload = ("NOOP: 1\r\n" + kite + "\r\n\r\n!").encode()
    noop = b"%x\r\n" % len(payload) + payload
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), 2)
            s.settimeout(2)
            s.sendall(request)
            counts["conns"] += 1
            for _ in range(100_000):
                if stop.is_set():
                    break
                s.sendall(noop * 16)
                counts["rounds"] += 16
        except OSError:
            counts["closed"] += 1
        finally:
            try:
                s.close()
            except Exception:
                pass


def flood_process(port, writer):
    """FLOOD_CONNS attacker threads for FLOOD_SECONDS; sends back the counts."""
    stop = threading.Event()
    counts = {"conns": 0, "rounds": 0, "closed": 0}
    threads = [
        threading.Thread(target=flood_worker, args=(port, stop, counts), daemon=True)
        for _ in range(FLOOD_CONNS)
    ]
    for t in threads:
        t.start()
    time.sleep(FLOOD_SECONDS)  # the flood's length (a load duration, not a sync)
    stop.set()
    for t in threads:
        t.join(5)
    writer.send(counts)


def flood(run):
    port = free_port()
    origin = run.nginx(1)
    fe, fe_log = run.start(
        "flood-fe",
        ["--isfrontend", "--host=127.0.0.1", f"--ports={port}", "--domain=http:*.test:s3cret"],
    )
    wait_port(port)
    be, _ = run.start(
        "flood-be",
        [f"--frontend=127.0.0.1:{port}", f"--service_on=http:ok.test:127.0.0.1:{origin}:s3cret"],
    )
    wait_log(fe_log, "kite http:ok.test is live")
    rss_idle = status_kib(fe.pid, "VmRSS")
    # The attacker runs in a process of its own, so its threads don't slow
    # the tenant's measurements through this interpreter's lock.
    reader, writer = multiprocessing.Pipe(duplex=False)
    attacker = multiprocessing.Process(target=flood_process, args=(port, writer), daemon=True)
    log_before = os.path.getsize(fe_log)
    started = time.time()
    attacker.start()
    times, failed, peak = [], 0, 0
    # One tenant request every 100 ms, each on a new connection, timed.
    for _ in range(FLOOD_SECONDS * 10):
        if time.time() - started >= FLOOD_SECONDS:
            break
        try:
            t = time.perf_counter()
            s = socket.create_connection(("127.0.0.1", port), 5)
            s.settimeout(5)
            ok = get_keepalive(s, "ok.test") == 200
            s.close()
            times.append((time.perf_counter() - t) * 1000)
            failed += 0 if ok else 1
        except Exception:
            failed += 1
        peak = max(peak, status_kib(fe.pid, "VmRSS"))
        time.sleep(0.1)
    counts = reader.recv() if reader.poll(FLOOD_SECONDS + 10) else {"conns": 0, "rounds": 0}
    attacker.join(5)
    if attacker.is_alive():
        attacker.kill()
    hwm = status_kib(fe.pid, "VmHWM")
    logged = os.path.getsize(fe_log) - log_before
    run.stop()
    med = statistics.median(times) if times else float("nan")
    worst = max(times) if times else float("nan")
    return [
        ("flood connections opened / NOOP rounds sent", f"{counts['conns']:,} / {counts['rounds']:,}"),
        ("frontend RSS idle / peak sampled / VmHWM",
         f"{rss_idle / 1024:.1f} / {peak / 1024:.1f} / {hwm / 1024:.1f} MiB"),
        ("frontend log bytes during the flood", f"{logged:,}"),
        ("tenant's requests served / failed during the flood", f"{len(times) - failed} / {failed}"),
        ("tenant's request time (new connection), median / worst", f"{med:.2f} / {worst:.2f} ms"),
    ]


def flood_report(report, figures, before):
    report.append("## Under attack: unauthenticated flood\n")
    report.append(
        f"{FLOOD_CONNS} flooding connections for {FLOOD_SECONDS} s (from a process of their own), "
        "each sending a tunnel request with an unsigned kite line (and an ANSI escape in its "
        "version), then in-band NOOP rounds with unsigned `X-PageKite:` lines as fast as the "
        "socket takes them; a real tenant's visitor fetches a page through the same frontend "
        "every 100 ms meanwhile.\n"
    )
    if before is None:
        report.append("| figure | value |\n|---|---|")
        for name, value in figures:
            report.append(f"| {name} | {value} |")
    else:
        label, old = before
        report.append(f"| figure | this build | {label} |\n|---|---|---|")
        for (name, value), (_, was) in zip(figures, old):
            report.append(f"| {name} | {value} | {was} |")
    report.append("")


def exhaustion(run):
    """Tenant B's latency idle and while tenant A's visitors hold their
    buffers; B's measurement while A hogs is None when B was refused."""
    port = free_port()
    fe, fe_log = run.start(
        "tenants-fe",
        ["--isfrontend", "--host=127.0.0.1", f"--ports={port}", "--domain=http:*.test:s3cret",
         "--buffers=16384"],
    )
    wait_port(port)
    for name in ("a", "b"):
        origin = run.nginx(256)
        run.start(
            f"tenant-{name}",
            [f"--frontend=127.0.0.1:{port}",
             f"--service_on=http:{name}.test:127.0.0.1:{origin}:s3cret"],
        )
        wait_log(fe_log, f"kite http:{name}.test is live")
    idle = latencies(port, "b.test", LATENCY_REQUESTS)
    hogs = []
    for _ in range(HOGS):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(3)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: a.test\r\n\r\n")
            if not s.recv(1):
                raise OSError("refused")
            hogs.append(s)
        except OSError:
            s.close()
            break
    time.sleep(2)  # let A's streams fill what they may (a measurement pause, not a sync)
    held = status_kib(fe.pid, "VmRSS")
    try:
        busy = latencies(port, "b.test", LATENCY_REQUESTS)
    except (OSError, RuntimeError):
        busy = None
    for s in hogs:
        s.close()
    run.stop()
    return {"hogs": len(hogs), "idle": idle, "busy": busy, "rss": held}


def exhaustion_report(report, now, before):
    report.append("## Under attack: one tenant exhausting the buffers\n")
    report.append(
        f"Frontend with `--buffers=16384` (16 MiB; this build holds a tunnel to a 4 MiB share). "
        f"Tenant A: up to {HOGS} visitors start 256 MiB downloads and read nothing (4 KiB receive "
        f"buffers; new ones stop once one gets no reply within 3 s). Tenant B: {LATENCY_REQUESTS} "
        "sequential keep-alive GETs on a new connection, idle and while A's visitors hold their buffers.\n"
    )
    report.append("| build | A's stalled visitors | B idle, median / p99 | B while A hogs, median / p99 "
                  "| ratio (median) | target ≤ 2x | frontend RSS |\n|---|---|---|---|---|---|---|")
    for label, r in [("this build", now)] + ([before] if before else []):
        idle = r["idle"]
        if r["busy"] is None:
            busy, ratio, met = "refused", "—", "NOT met"
        else:
            busy = f"{r['busy'][0]:.3f} / {r['busy'][1]:.3f} ms"
            q = r["busy"][0] / idle[0]
            ratio, met = f"{q:.2f}x", ("met" if q <= 2 else "NOT met")
        report.append(
            f"| {label} | {r['hogs']} | {idle[0]:.3f} / {idle[1]:.3f} ms | {busy} | {ratio} | {met} "
            f"| {r['rss'] / 1024:.1f} MiB |"
        )
    report.append("")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rkite", required=True)
    ap.add_argument("--out", default="bench/RESULTS.md")
    ap.add_argument("--before", help="also flood this older rkite binary, for a before/after column")
    ap.add_argument("--before-label", default="before", help="the column's heading")
    args = ap.parse_args()
    if not shutil.which("nginx"):
        sys.exit("hostile.py needs nginx (apt-get install nginx)")
    work = tempfile.mkdtemp(prefix="rkite-hostile-")
    run = Run(os.path.abspath(args.rkite), work)
    report = [
        "",
        f"<!-- bench/hostile.py, appended after the harness's report -->\n",
        f"Measured by `python3 bench/hostile.py {shlex.join(sys.argv[1:])}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"{platform.platform()}.\n",
    ]
    older = None
    if args.before:
        os.makedirs(os.path.join(work, "before"))
        older = Run(os.path.abspath(args.before), os.path.join(work, "before"))
    label = f"`{args.before_label}`"
    try:
        figures = flood(run)
        flood_report(report, figures, (label, flood(older)) if older else None)
        tenants = exhaustion(run)
        exhaustion_report(report, tenants, (label, exhaustion(older)) if older else None)
    finally:
        run.stop()
        if older:
            older.stop()
    text = "\n".join(report) + "\n"
    print(text)
    with open(args.out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
