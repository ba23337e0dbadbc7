#!/usr/bin/env python3
"""A pagekitec (libpagekite) backend through rkite and through pagekite.py: appends a row to
bench/RESULTS.md (issue 11).

libpagekite's `pagekitec`, built from the vendored tarball with the recipe of
tests/data/libpagekite/README.md into the same cache as tests/e2e/pagekitec.rs
(`target/pagekitec-6222720/`, under the same flock), serves one kite through each frontend:
rkite (plain tunnel, and TLS), Debian's pagekite.py (plain: its Python 3 frontend crashes on
pagekitec's direct TLS hello), and optionally an older rkite (`--before`). All frontends run
at once; each round downloads one 20 MiB file of random bytes through every frontend in
turn (rotating order), one stream at a time, and checks its length and SHA-256.

pagekitec looks names up before it dials, so it runs in a private mount namespace
(`unshare -m`, as root) whose /etc/hosts maps its names to 127.0.0.1 and whose
/etc/resolv.conf names only 127.0.0.1. Every listener is on 127.0.0.1; every wait and loop
is bounded. Usage: bench/pagekitec.py --rkite PATH [--before PATH] [--out bench/RESULTS.md]
"""

import argparse
import fcntl
import hashlib
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMIT = "6222720"
TARBALL = os.path.join(REPO, "tests", "data", "libpagekite", f"libpagekite-{COMMIT}.tar.gz")
KITE = "a.test"
FE_NAME = "relay.test"
SECRET = "bench-secret-pkc"
SIZE = 20 * (1 << 20)
BUILD_SECONDS = 600


def say(msg):
    print(f"[pagekitec] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(target):
    """The install prefix of pagekitec in `target`/pagekitec-COMMIT, built if missing."""
    prefix = os.path.join(target, f"pagekitec-{COMMIT}", "inst")
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, f"pagekitec-{COMMIT}.lock"), "w") as lock:
        deadline = time.time() + BUILD_SECONDS
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    sys.exit("timed out waiting for another build of pagekitec")
                time.sleep(0.1)
        if os.path.isfile(os.path.join(prefix, "bin", "pagekitec")):
            return prefix
        work = os.path.join(target, f"pagekitec-{COMMIT}.build-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        say(f"building pagekitec in {work}")
        script = ('tar xzf "$1" && cd libpagekite-* && ./autogen.sh && '
                  './configure --prefix="$2/inst" --without-java && make -j2 && make install')
        with open(os.path.join(work, "build.log"), "wb") as log:
            subprocess.run(["sh", "-c", script, "build", TARBALL, work], cwd=work, stdout=log,
                           stderr=log, stdin=subprocess.DEVNULL, check=True,
                           timeout=BUILD_SECONDS)
        final = os.path.dirname(prefix)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(work, final)
        return prefix


class Procs:
    """Child processes in their own process groups, stopped with SIGTERM then SIGKILL."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.work, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.time() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def clean_env():
    env = dict(os.environ)
    for v in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
              "ALL_PROXY", "no_proxy", "NO_PROXY"):
        env.pop(v, None)
    return env


def download(port, out):
    """One download through the frontend on `port`: (seconds, bytes, sha256) or None."""
    cmd = ["curl", "-s", "--max-time", "120", "-o", out, "-w", "%{http_code} %{time_total}",
           "-H", f"Host: {KITE}", f"http://127.0.0.1:{port}/big"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=130)
    parts = r.stdout.split()
    if r.returncode != 0 or len(parts) != 2 or parts[0] != "200":
        return None
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return float(parts[1]), os.path.getsize(out), digest


def wait_serving(port, out, procs, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if download(port, out):
            return
        if any(p.poll() is not None for p in procs):
            sys.exit(f"{what}: a process exited; logs are in {os.path.dirname(out)}")
        time.sleep(0.2)
    sys.exit(f"{what}: not serving after 60 s; logs are in {os.path.dirname(out)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rkite", required=True)
    ap.add_argument("--before", help="also run this older rkite binary as a frontend")
    ap.add_argument("--before-label", default="before")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "RESULTS.md"))
    ap.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR",
                                                        os.path.join(REPO, "target")))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("pagekitec.py needs root (unshare -m keeps pagekitec's look-ups on loopback)")
    for cmd in ("pagekite", "curl", "openssl", "unshare"):
        if not shutil.which(cmd):
            sys.exit(f"pagekitec.py needs {cmd} (make deps)")
    prefix = build(args.target)
    work = tempfile.mkdtemp(prefix="rkite-pagekitec-")
    procs = Procs(work)
    hosts, resolv, www = (os.path.join(work, n) for n in ("hosts", "resolv.conf", "www"))
    with open(hosts, "w") as f:
        f.write(f"127.0.0.1 localhost\n127.0.0.1 {FE_NAME} {KITE}\n")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\n")
    os.makedirs(www)
    with open(os.path.join(www, "big"), "wb") as f:
        f.write(os.urandom(SIZE))
    with open(os.path.join(www, "big"), "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    pem = os.path.join(work, "relay.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={FE_NAME}", "-keyout", pem + ".key", "-out", pem + ".crt"],
                   check=True, capture_output=True, timeout=60)
    with open(pem, "w") as f:
        f.write(open(pem + ".key").read() + open(pem + ".crt").read())
    origin = free_port()
    versions = {
        "pagekite": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "pagekite"],
                                   capture_output=True, text=True).stdout.strip() or "?",
    }

    # (label, frontend argv without the port, tls)
    domain = f"--domain=http:{KITE}:{SECRET}"
    systems = [("rkite, plain tunnel", [os.path.abspath(args.rkite), "--isfrontend"], False),
               ("rkite, TLS tunnel", [os.path.abspath(args.rkite), "--isfrontend",
                                      f"--tls_endpoint={FE_NAME}:{pem}"], True),
               (f"pagekite.py {versions['pagekite']}, plain tunnel",
                [shutil.which("pagekite"), "--clean", "--nullui", "--logfile=stdio",
                 "--isfrontend"], False)]
    if args.before:
        systems.append((f"rkite `{args.before_label}`, plain tunnel",
                        [os.path.abspath(args.before), "--isfrontend"], False))
    rates = {label: [] for label, _, _ in systems}
    try:
        procs.start("origin", [sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d",
                               www, str(origin)])
        ports = {}
        for i, (label, fe, tls) in enumerate(systems):
            port = free_port()
            ports[label] = port
            env = clean_env()
            env["HOME"] = work
            env["RUST_LOG"] = "info"
            fep = procs.start(f"fe{i}", fe + ["--host=127.0.0.1", f"--ports={port}",
                                              "--protos=http", domain], env)
            script = ('mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf '
                      '&& shift 2 && exec "$@"')
            pkc = ["unshare", "-m", "sh", "-c", script, "pagekitec", hosts, resolv,
                   os.path.join(prefix, "bin", "pagekitec"), "-S", "-N", "-C", "-F", FE_NAME,
                   "-P", str(port)] + ([] if tls else ["-I"]) + [
                       str(origin), "http", KITE, "0", SECRET]
            env = clean_env()
            env["LD_LIBRARY_PATH"] = os.path.join(prefix, "lib")
            bep = procs.start(f"pagekitec{i}", pkc, env)
            wait_serving(port, os.path.join(work, "warm"), [fep, bep], label)
            say(f"{label} serving on 127.0.0.1:{port}")
        for r in range(args.rounds):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for label, _, _ in order:
                got = download(ports[label], os.path.join(work, "out"))
                if not got or got[1] != SIZE or got[2] != want:
                    sys.exit(f"{label}: download failed or corrupt: {got}; logs in {work}")
                rates[label].append(SIZE / got[0])
                say(f"round {r + 1} {label:40s} {SIZE / got[0] / 1e6:8.1f} MB/s")
    finally:
        procs.stop()
    report = [
        "",
        "<!-- bench/pagekitec.py, appended after the harness's report -->\n",
        f"Measured by `python3 bench/pagekitec.py {shlex.join(sys.argv[1:])}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"{platform.platform()}.\n",
        "## pagekitec (libpagekite) backend, one stream",
        "",
        f"libpagekite's `pagekitec` (commit {COMMIT}, built from tests/data/libpagekite) "
        f"as the backend, in a private mount namespace on loopback; one {SIZE >> 20} MiB "
        "download of random bytes at a time (curl through the frontend, length and SHA-256 "
        f"checked), {args.rounds} per frontend, all frontends up at once and taken in "
        "rotating order. pagekite.py has no TLS row: its Python 3 frontend crashes on the "
        "TLS hello that pagekitec sends without a CONNECT.",
        "",
        "| frontend | MB/s, median | min–max | s per 20 MiB, median |",
        "|---|---:|---:|---:|",
    ]
    for label, _, _ in systems:
        xs = rates[label]
        med = statistics.median(xs)
        report.append(f"| {label} | **{med / 1e6:.1f}** | {min(xs) / 1e6:.1f}–{max(xs) / 1e6:.1f} "
                      f"| {SIZE / med:.2f} |")
    report.append("")
    text = "\n".join(report) + "\n"
    print(text)
    with open(args.out, "a") as f:
        f.write(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
