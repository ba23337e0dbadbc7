#!/usr/bin/env python3
"""rkite's tunnel through an outbound proxy beside the direct tunnel: appends a section to
bench/RESULTS.md (issue 13, item 1).

One rkite frontend and an nginx origin serving a 1 GiB file of random bytes; for each
system a fresh rkite backend holds the kite: directly, through Debian's tinyproxy
(`--proxy=http://…`, HTTP CONNECT) and through microsocks (`--socksify=…`, SOCKS5), all
on 127.0.0.1. Each round downloads the file once through the frontend per system, in
rotating order, with curl (length checked), and charges each process's CPU
(utime+stime from /proc/PID/stat) per GiB moved. Only one backend runs at a time (they
fly the same kite). Every wait and loop is bounded.
Usage: bench/proxy.py --rkite PATH [--rounds N] [--out bench/RESULTS.md]
"""

import argparse
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 1 << 30
KITE = "bench.test"
SECRET = "bench-secret-proxy"
TICK = os.sysconf("SC_CLK_TCK")


def say(msg):
    print(f"[proxy] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"{what} does not listen on 127.0.0.1:{port}")


def wait_line(path, needle, what, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path, errors="replace") as f:
            if needle in f.read():
                return
        time.sleep(0.02)
    sys.exit(f"{what}: no {needle!r} in {path}")


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def version(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                         capture_output=True, text=True).stdout.strip()
    return out or "?"


class Procs:
    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        p.log_path = log.name
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def stop_all(self):
        for p in self.procs:
            self.stop(p)


def clean_env():
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["RUST_LOG"] = "info"
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rkite", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "RESULTS.md"))
    args = ap.parse_args()
    for cmd in ("nginx", "tinyproxy", "microsocks", "curl"):
        if not shutil.which(cmd):
            sys.exit(f"proxy.py needs {cmd} (make deps)")
    rkite = os.path.abspath(args.rkite)
    work = tempfile.mkdtemp(prefix="rkite-proxy-bench-")
    os.chmod(work, 0o755)  # nginx's workers drop root and must read the file
    procs = Procs(work)
    www = os.path.join(work, "www")
    os.makedirs(www)
    with open(os.path.join(www, "big"), "wb") as f:
        for _ in range(SIZE >> 24):
            f.write(os.urandom(1 << 24))
    origin, fe_port, tp_port, ms_port = free_port(), free_port(), free_port(), free_port()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"daemon off; worker_processes 1; pid {work}/nginx.pid; "
                f"error_log {work}/nginx-error.log;\nevents {{ worker_connections 64; }}\n"
                f"http {{ access_log off; sendfile on; "
                f"server {{ listen 127.0.0.1:{origin}; root {www}; }} }}\n")
    tp_conf = os.path.join(work, "tinyproxy.conf")
    with open(tp_conf, "w") as f:
        f.write(f"Port {tp_port}\nListen 127.0.0.1\nTimeout 600\nAllow 127.0.0.1\n"
                f"LogLevel Warning\nMaxClients 20\nConnectPort {fe_port}\n")
    systems = [
        ("rkite, direct tunnel", [], None),
        (f"rkite through tinyproxy {version('tinyproxy')} (HTTP CONNECT)",
         [f"--proxy=http://127.0.0.1:{tp_port}/"], "tinyproxy"),
        (f"rkite through microsocks {version('microsocks')} (SOCKS5)",
         [f"--socksify=127.0.0.1:{ms_port}"], "microsocks"),
    ]
    rates = {label: [] for label, _, _ in systems}
    costs = {label: {} for label, _, _ in systems}
    try:
        procs.start("nginx", ["nginx", "-c", conf, "-p", work])
        wait_port(origin, "nginx")
        fe = procs.start("frontend", [rkite, "--isfrontend", "--host=127.0.0.1",
                                      f"--ports={fe_port}", "--protos=http",
                                      f"--domain=http:{KITE}:{SECRET}"], clean_env())
        wait_port(fe_port, "the frontend")
        proxies = {
            "tinyproxy": procs.start("tinyproxy", ["tinyproxy", "-d", "-c", tp_conf]),
            "microsocks": procs.start("microsocks", ["microsocks", "-i", "127.0.0.1",
                                                     "-p", str(ms_port)]),
        }
        wait_port(tp_port, "tinyproxy")
        wait_port(ms_port, "microsocks")
        n = 0
        for r in range(args.rounds):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for label, extra, proxy in order:
                n += 1
                be = procs.start(f"backend{n}", [
                    rkite, f"--frontend=127.0.0.1:{fe_port}",
                    f"--service_on=http:{KITE}:127.0.0.1:{origin}:{SECRET}"] + extra,
                    clean_env())
                wait_line(be.log_path, "is up with", label)
                measured = {"frontend": fe, "backend": be}
                if proxy:
                    measured[proxy] = proxies[proxy]
                before = {k: cpu(p.pid) for k, p in measured.items()}
                t0 = time.monotonic()
                out = subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", "--max-time",
                     "300", "-H", f"Host: {KITE}", f"http://127.0.0.1:{fe_port}/big"],
                    capture_output=True, text=True, timeout=330, env=clean_env()).stdout
                took = time.monotonic() - t0
                after = {k: cpu(p.pid) for k, p in measured.items()}
                procs.stop(be)
                if out.strip() != str(SIZE):
                    sys.exit(f"{label}: download got {out!r} bytes; logs in {work}")
                rates[label].append(SIZE / took)
                for k in measured:
                    costs[label].setdefault(k, []).append((after[k] - before[k]) / (SIZE / (1 << 30)))
                say(f"round {r + 1} {label:55s} {SIZE / took / 1e6:8.1f} MB/s")
    finally:
        procs.stop_all()
    direct = statistics.median(rates[systems[0][0]])
    report = [
        "",
        "<!-- bench/proxy.py, appended after the harness's report -->\n",
        f"Measured by `python3 bench/proxy.py {shlex.join(sys.argv[1:])}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"{platform.platform()}; load average before: "
        f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}.\n",
        "## Through an outbound proxy (`--proxy`, `--socksify`), one stream",
        "",
        f"One curl download of {SIZE >> 20} MiB of random bytes through an rkite frontend, "
        f"the kite held by an rkite backend that reaches the frontend directly or through a "
        f"proxy on loopback; {args.rounds} downloads per system in rotating order. CPU is "
        "per GiB moved, per process (the proxy's own cost included).",
        "",
        "| system | MB/s, median | min–max | × direct | frontend s/GiB | backend s/GiB "
        "| proxy s/GiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, _, proxy in systems:
        xs = rates[label]
        med = statistics.median(xs)
        c = {k: statistics.median(v) for k, v in costs[label].items()}
        px = f"{c[proxy]:.2f}" if proxy else "—"
        report.append(f"| {label} | **{med / 1e6:,.0f}** | {min(xs) / 1e6:,.0f}–"
                      f"{max(xs) / 1e6:,.0f} | {med / direct:.2f}× | {c['frontend']:.2f} "
                      f"| {c['backend']:.2f} | {px} |")
    report.append("")
    text = "\n".join(report) + "\n"
    print(text)
    with open(args.out, "a") as f:
        f.write(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
