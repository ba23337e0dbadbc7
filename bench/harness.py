#!/usr/bin/env python3
"""rkite benchmark harness: rkite against direct loopback, HAProxy, pagekite.py, rathole and bore.

`make bench` runs it (see bench/README.md); `python3 bench/harness.py --help` lists the
options. Python 3 standard library only.

What it does, in order:
  1. installs what is missing: wrk, iperf3, nginx, haproxy, pagekite, curl, openssl (Debian
     packages, with service start-up blocked) and rathole + bore (`cargo install --root`
     into a cache folder outside the repository);
  2. starts one nginx origin and every system at once, each on its own loopback ports,
     checks that every listening socket of every process it started is on 127.0.0.1,
     and waits for each system by condition (a log line, a listening socket, a 200 reply);
  3. measures in rounds: each round runs every load on every system, in an order that
     rotates between rounds, so drift hits all systems alike;
  4. tears everything down (process groups, SIGTERM then SIGKILL) and writes
     bench/RESULTS.md.

Every listener is bound to 127.0.0.1 and every load is bounded in count and time.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
HOST = "127.0.0.1"
KITE = "bench.test"
FE_CERTNAME = "fe.bench.test"
SECRET = "bench-secret-7c1e"
PAGE_SIZE = 600
DATA_SIZE = GIB
RATHOLE_VERSION = "0.5.0"
BORE_VERSION = "0.6.0"
BORE_CONTROL_PORT = 7835  # fixed in bore; we bind it with --bind-addr 127.0.0.1
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Debian package for each command the harness runs.
APT_TOOLS = {
    "wrk": "wrk",
    "iperf3": "iperf3",
    "nginx": "nginx",
    "haproxy": "haproxy",
    "pagekite": "pagekite",
    "curl": "curl",
    "openssl": "openssl",
    "strip": "binutils",
}
# Debian packages that building rathole (default features: native-tls) needs.
APT_BUILD = ["pkg-config", "libssl-dev"]

PROFILES = {
    # bulk_reps: one-stream runs per system per round (the median is over rounds x reps).
    "full": dict(rounds=3, bulk_size=GIB, bulk_reps=4, slow_bulk_size=64 * MIB,
                 slow_bulk_reps=1, par_size=128 * MIB, slow_par_size=4 * MIB,
                 wrk_secs=5, idle_streams=200, slow_idle_streams=20, iperf_secs=3),
    "quick": dict(rounds=1, bulk_size=256 * MIB, bulk_reps=1, slow_bulk_size=8 * MIB,
                  slow_bulk_reps=1, par_size=32 * MIB, slow_par_size=1 * MIB,
                  wrk_secs=2, idle_streams=50, slow_idle_streams=10, iperf_secs=1),
}
WRK_THREADS = 2
WRK_CONNS = 32
PAR_STREAMS = 8

# Said in RESULTS.md under Notes, every run.
STATIC_NOTES = [
    "rkite runs at its default log level (start-up and tunnel events; nothing per request). "
    "pagekite.py logs every request to its --logfile, and bore logs every connection at INFO "
    "on stdout (its tracing subscriber has no filter to turn that off): both as shipped, both "
    "to files in the work directory. rathole runs at its default level (info: nothing per "
    "connection).",
    f"rathole {RATHOLE_VERSION} is built with its default features (tcp, tls via OpenSSL, noise, "
    "websocket, hot-reload) and without `--locked`: its Cargo.lock pins `time` 0.3.29, which "
    "current Rust no longer compiles. bore is built `--locked`.",
    "bore's control port is fixed at 7835; `--bind-addr 127.0.0.1` puts it and the tunnel "
    "port on loopback.",
    "HAProxy is not a tunnel but the yardstick for relaying (issue 15): Debian's haproxy, two "
    "instances chained (frontend → backend → origin) so the bytes take two relay hops as they "
    "do through a tunnel's frontend and backend; each `nbthread 1`, TCP mode, no logging, run "
    "in the foreground (`-db`). The splice variant has `option splice-request` + `option "
    "splice-response` (and `no option splice-auto`), the copy variant none of them. Its CPU "
    "and memory figures are summed over both instances as a tunnel's are over its two "
    "processes.",
    "rkite's plain tunnel runs twice: with `RKITE_SPLICE=on` (kernel splicing where both "
    "sides are plain TCP; the default) and `RKITE_SPLICE=off` (always copy). The TLS tunnel "
    "runs with the variable unset. The harness removes any RKITE_SPLICE of its own "
    "environment from every child.",
]
# The rkite plain-tunnel variants and the HAProxy variants, whose pipes are counted
# (a pipe appears only while a process splices).
SPLICE_SYSTEMS = ["rkite", "rkite-copy", "haproxy-splice", "haproxy-copy"]
T0 = time.monotonic()
RUNNING = []  # every Proc started, for teardown


def say(msg):
    print(f"[bench {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- processes


def child_env():
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and k not in ("RUST_LOG", "RKITE_SPLICE")}
    env["LC_ALL"] = "C"
    return env


class Proc:
    """A process in its own session (so its whole group can be stopped), logging to a file."""

    def __init__(self, role, argv, workdir, log_name, env=None):
        """env: variables set on top of child_env() (shown before the command in RESULTS.md)."""
        self.role = role
        self.argv = [str(a) for a in argv]
        self.env_extra = dict(env or {})
        self.log_path = os.path.join(workdir, log_name)
        self._log = open(self.log_path, "wb")
        full_env = child_env()
        full_env.update(self.env_extra)
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                  stderr=subprocess.STDOUT, env=full_env,
                                  cwd=workdir, start_new_session=True)
        self.pid = self.p.pid
        RUNNING.append(self)

    def alive(self):
        return self.p.poll() is None

    def pids(self):
        """This process and its descendants (nginx's worker, for instance)."""
        kids = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = read_stat(int(d))
                if st:
                    kids.setdefault(st["ppid"], []).append(int(d))
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(kids.get(pid, []))
        return out

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, n=15):
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self, grace=6.0):
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                say(f"{self.role} (pid {self.pid}) ignored SIGTERM for {grace} s: SIGKILL")
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        # Anything left in the group (a worker whose leader is gone).
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if not self._log.closed:
            self._log.close()


def teardown_all():
    while RUNNING:
        RUNNING.pop().stop()


def read_stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rfind(")") + 2:].split()
    return {"ppid": int(fields[1]), "ticks": int(fields[11]) + int(fields[12])}


def machine_busy_seconds():
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / CLK_TCK


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        st = read_stat(pid)
        if st:
            total += st["ticks"]
    return total / CLK_TCK


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_hwm(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def wait_until(pred, timeout, what, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise BenchError(f"{p.role} exited (code {p.p.returncode}) while waiting for "
                                 f"{what}; log tail:\n{p.tail()}")
        if pred():
            return
        time.sleep(0.05)
    tails = "".join(f"\n--- {p.role} log tail:\n{p.tail()}" for p in procs)
    raise BenchError(f"timed out after {timeout} s waiting for {what}{tails}")


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def run(argv, timeout=120, check=True, **kw):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                       timeout=timeout, env=kw.pop("env", child_env()), **kw)
    if check and r.returncode != 0:
        raise BenchError(f"{shlex.join(map(str, argv))} failed ({r.returncode}):\n"
                         f"{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r


# --------------------------------------------------------------------------- network audit


def _sock_inodes(pids):
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
        except OSError:
            pass
    return inodes


def pipe_count(pids):
    """Pipes these processes hold open: a splicing relay holds one (or a pair) per stream
    with data in flight, so the count during a bulk load shows whether splicing is on."""
    n = 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
                    n += 1
            except OSError:
                pass
    return n


def _decode_addr(hexaddr):
    ip, port = hexaddr.split(":")
    port = int(port, 16)
    if len(ip) == 8:
        b = bytes.fromhex(ip)[::-1]
        return socket.inet_ntop(socket.AF_INET, b), port
    raw = bytes.fromhex(ip)
    b = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, b), port


def bound_sockets():
    """(proto, ip, port, inode) for every TCP listener and every UDP socket."""
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{proto}") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if proto.startswith("tcp") and parts[3] != "0A":
                continue
            ip, port = _decode_addr(parts[1])
            out.append((proto, ip, port, int(parts[9])))
    return out


def is_loopback(ip):
    return ip.startswith("127.") or ip == "::1" or ip.startswith("::ffff:127.")


def audit_listeners(name, procs):
    """Every listening socket of these processes must be on loopback; returns them."""
    pids = [pid for p in procs for pid in p.pids()]
    inodes = _sock_inodes(pids)
    mine = [(proto, ip, port) for proto, ip, port, ino in bound_sockets() if ino in inodes]
    bad = [m for m in mine if not is_loopback(m[1])]
    if bad:
        raise BenchError(f"{name} has a non-loopback listener {bad}: stopping (network rule)")
    return mine


def port_listening(port):
    return any(proto.startswith("tcp") and p == port and is_loopback(ip)
               for proto, ip, p, _ in bound_sockets())


# --------------------------------------------------------------------------- installs


def sudo():
    return [] if os.geteuid() == 0 else ["sudo"]


def which(cmd):
    return shutil.which(cmd) or shutil.which(cmd, path="/usr/sbin:/sbin")


def apt_install(pkgs, notes):
    say(f"installing Debian packages: {' '.join(pkgs)}")
    guard = "/usr/sbin/policy-rc.d"
    made_guard = False
    if not os.path.exists(guard):
        # Keep packages (nginx, haproxy, pagekite, iperf3) from starting their services: a
        # stock nginx would listen on 0.0.0.0:80.
        run(sudo() + ["sh", "-c", f"printf '#!/bin/sh\\nexit 101\\n' > {guard} && chmod 755 {guard}"])
        made_guard = True
    try:
        run(sudo() + ["apt-get", "update", "-qq"], timeout=600)
        env = child_env()
        env["DEBIAN_FRONTEND"] = "noninteractive"
        run(sudo() + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq",
                      "--no-install-recommends"] + pkgs, timeout=900, env=env)
    finally:
        if made_guard:
            run(sudo() + ["rm", "-f", guard], check=False)
    if shutil.which("systemctl"):
        for svc in ("nginx", "haproxy", "pagekite", "iperf3"):
            r = run(["systemctl", "is-active", "--quiet", svc], check=False)
            if r.returncode == 0 and svc in " ".join(pkgs):
                say(f"stopping and disabling the {svc} service the package started")
                run(sudo() + ["systemctl", "disable", "--now", svc], check=False)
    notes.append(f"installed Debian packages: {' '.join(pkgs)}")


def dpkg_installed(pkg):
    r = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
    return r.returncode == 0 and "install ok installed" in r.stdout


def dpkg_version(pkg):
    r = run(["dpkg-query", "-W", "-f=${Version}", pkg], check=False)
    return r.stdout.strip() if r.returncode == 0 else "?"


def cargo_install(cache, crate, version, binname, locked, notes):
    binpath = os.path.join(cache, "bin", binname)
    stamp = os.path.join(cache, f"{crate}.version")
    if os.path.exists(binpath) and os.path.exists(stamp):
        with open(stamp) as f:
            if f.read().strip() == version:
                return binpath
    if not shutil.which("cargo"):
        raise BenchError("cargo is needed to install rathole and bore")
    argv = ["cargo", "install", "--root", cache, "--version", version, crate]
    if locked:
        argv.insert(2, "--locked")
    say(f"building {crate} {version} (once; cached in {cache}): {shlex.join(argv)}")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise BenchError(f"cargo install {crate} failed:\n{r.stderr[-3000:]}")
    with open(stamp, "w") as f:
        f.write(version + "\n")
    notes.append(f"built {crate} {version} with `{shlex.join(argv)}`")
    return binpath


def ensure_tools(args, notes):
    missing = sorted({pkg for cmd, pkg in APT_TOOLS.items() if not which(cmd)})
    wants_rathole = not os.path.exists(os.path.join(args.cache, "bin", "rathole"))
    if wants_rathole:
        missing += [p for p in APT_BUILD if not dpkg_installed(p)]
    if missing:
        if args.no_install:
            raise BenchError(f"missing: {' '.join(missing)} (and --no-install was given)")
        apt_install(sorted(set(missing)), notes)
    os.makedirs(args.cache, exist_ok=True)
    # rathole 0.5.0's Cargo.lock pins `time` 0.3.29, which no longer compiles with current
    # Rust, so rathole is resolved afresh (semver-compatible updates); bore's lock works.
    bins = {
        "rathole": cargo_install(args.cache, "rathole", RATHOLE_VERSION, "rathole", False, notes),
        "bore": cargo_install(args.cache, "bore-cli", BORE_VERSION, "bore", True, notes),
    }
    return bins


def ensure_data(cache):
    """A 1 GiB file of random bytes, made once: incompressible, so pagekite.py's ZChunks
    (zlib) cannot shrink it the way it would shrink a sparse file of zeros."""
    path = os.path.join(cache, "data", "random-1GiB.bin")
    if os.path.exists(path) and os.path.getsize(path) == DATA_SIZE:
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    say(f"writing {path} (1 GiB of random bytes, once)")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for _ in range(DATA_SIZE // (4 * MIB)):
            f.write(os.urandom(4 * MIB))
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- HTTP helpers


def http_ok(port, path="/page.html", want_len=PAGE_SIZE):
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=3)
        c.request("GET", path, headers={"Host": KITE})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status == 200 and len(body) == want_len
    except (OSError, http.client.HTTPException):
        return False


def open_idle_streams(port, n):
    """n keep-alive connections that have each carried one request and stay open, opened
    one after the other (each reply read before the next connection), so that what stays
    resident is the cost of an idle stream, not of n replies in flight at once."""
    socks, err = [], None
    req = f"GET /page.html HTTP/1.1\r\nHost: {KITE}\r\n\r\n".encode()
    for _ in range(n):
        try:
            s = socket.create_connection((HOST, port), timeout=10)
        except OSError as e:
            err = f"connect: {e}"
            break
        try:
            s.sendall(req)
            read_reply(s)
            socks.append(s)
        except OSError as e:
            err = f"reply: {e}"
            s.close()
            break
    return socks, err


def read_reply(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed before the reply headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else PAGE_SIZE
    while len(body) < need:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed before the end of the reply body")
        body += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"reply {head[:40]!r}")


def curl_argv(url, offset, nbytes, max_time):
    argv = ["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-H", f"Host: {KITE}",
            "--max-time", str(max_time), "-w", "%{http_code} %{size_download} %{speed_download}"]
    if nbytes < DATA_SIZE:
        argv += ["-r", f"{offset}-{offset + nbytes - 1}"]
    return argv + [url]


def curl_sampling_pipes(argv, timeout, roles):
    """Run curl to completion (bounded by timeout) while counting, every 0.1 s, the pipes
    each role's processes hold; returns (curl's -w output, {role: peak pipes}). The 0.1 s is
    a sampling interval, not a wait for anything: the loop ends when curl exits."""
    p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=child_env())
    peak = {r: pipe_count(pids) for r, pids in roles.items()}
    deadline = time.monotonic() + timeout
    try:
        while p.poll() is None and time.monotonic() < deadline:
            for r, pids in roles.items():
                peak[r] = max(peak[r], pipe_count(pids))
            time.sleep(0.1)
        out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    if p.returncode != 0:
        raise BenchError(f"{shlex.join(map(str, argv))} failed ({p.returncode}): {err[-500:]}")
    return out, peak


def check_curl(out, nbytes):
    code, size, speed = out.split()
    if code not in ("200", "206") or int(size) != nbytes:
        raise BenchError(f"curl got HTTP {code} and {size} of {nbytes} bytes")
    return float(speed)


def wrk_argv(url, secs, close):
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNS}", f"-d{secs}s", "--timeout", "5s",
            "--latency", "-H", f"Host: {KITE}"]
    if close:
        argv += ["-H", "Connection: close"]
    return argv + [url]


def _dur_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return None
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[m.group(2)]


def parse_wrk(out):
    res = {"errors": 0, "non2xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}"] = _dur_ms(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
        res["err_detail"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    return res


# --------------------------------------------------------------------------- systems


class System:
    def __init__(self, key, label, slow=False):
        self.key = key
        self.label = label
        self.slow = slow  # pagekite.py: smaller transfers, scaled per GiB
        self.procs = {}  # role -> Proc
        self.port = None
        self.commands = []  # (what, command line) for RESULTS.md
        self.files = {}  # name -> text shown in RESULTS.md
        self.listeners = []
        self.stats = []
        self.pipes_start = {}  # role -> pipes held once up, before the first request

    def add(self, proc):
        self.procs[proc.role] = proc
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in proc.env_extra.items())
        self.commands.append((proc.role, env + shlex.join(proc.argv)))
        return proc

    def url(self, path):
        return f"http://{HOST}:{self.port}{path}"

    def roles(self):
        return list(self.procs)

    def ready(self, timeout=40):
        self.pipes_start = {r: pipe_count(p.pids()) for r, p in self.procs.items()}
        wait_until(lambda: http_ok(self.port), timeout, f"{self.label} to serve the page",
                   list(self.procs.values()))
        self.listeners = audit_listeners(self.label, self.procs.values())

    def stop(self):
        for p in reversed(list(self.procs.values())):
            p.stop()
            if p in RUNNING:
                RUNNING.remove(p)


def start_origin(ctx):
    d = ctx["workdir"]
    www = os.path.join(d, "www")
    os.makedirs(www)
    os.chmod(d, 0o755)
    page = ("<!doctype html><html><head><title>rkite bench</title></head><body><p>"
            + "The quick brown fox jumps over the lazy dog. " * 20)[:PAGE_SIZE - 18] + "</p></body></html>"
    assert len(page) == PAGE_SIZE, len(page)
    with open(os.path.join(www, "page.html"), "w") as f:
        f.write(page)
    os.symlink(ctx["data"], os.path.join(www, "data.bin"))
    port = free_port()
    nginx = which("nginx")
    vinfo = run([nginx, "-V"], check=False).stderr
    temps = ""
    for mod in ("proxy", "fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{mod}_module" not in vinfo:
            temps += f"  {mod}_temp_path {d}/tmp/{mod};\n"
    os.makedirs(os.path.join(d, "tmp"))
    conf = f"""# generated by bench/harness.py
{'user root;' if os.geteuid() == 0 else ''}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 300s;
  keepalive_requests 10000000;
  client_body_temp_path {d}/tmp/body;
{temps}  types {{ text/html html; application/octet-stream bin; }}
  default_type application/octet-stream;
  server {{
    listen {HOST}:{port} backlog=4096;
    server_name _;
    root {www};
  }}
}}
"""
    conf_path = os.path.join(d, "nginx.conf")
    with open(conf_path, "w") as f:
        f.write(conf)
    s = System("origin", "nginx origin")
    s.port = port
    s.add(Proc("origin", [nginx, "-p", d, "-e", f"{d}/nginx-error.log", "-c", conf_path],
               d, "nginx.log"))
    s.files["nginx.conf"] = conf
    s.ready()
    return s


def start_direct(ctx):
    s = System("direct", "direct (no tunnel)")
    s.port = ctx["origin_port"]
    s.commands.append(("client", f"curl/wrk straight to http://{HOST}:{s.port}/"))
    return s


def start_rkite(ctx, tls, splice=None):
    """splice: None leaves RKITE_SPLICE unset (rkite's default), True/False set it on/off."""
    d, rk = ctx["workdir"], ctx["rkite"]
    if tls:
        key, label = "rkite-tls", "rkite, TLS tunnel"
    elif splice is False:
        key, label = "rkite-copy", "rkite, plain tunnel, no splice"
    else:
        key, label = "rkite", "rkite, plain tunnel, splice"
    s = System(key, label)
    s.port = free_port()
    tag = key
    env = {} if splice is None else {"RKITE_SPLICE": "on" if splice else "off"}
    fe = [rk, "--isfrontend", f"--host={HOST}", f"--ports={s.port}", "--protos=http",
          f"--domain=http:{KITE}:{SECRET}"]
    be = [rk, f"--frontend={HOST}:{s.port}",
          f"--service_on=http:{KITE}:{HOST}:{ctx['origin_port']}:{SECRET}"]
    if tls:
        fe.append(f"--tls_endpoint={FE_CERTNAME}:{ctx['certs']['combined']}")
        be += [f"--fe_certname={FE_CERTNAME}", f"--ca_certs={ctx['certs']['ca']}"]
    fep = s.add(Proc("frontend", fe, d, f"{tag}-fe.log", env=env))
    wait_until(lambda: "listening on" in fep.log_text(), 15, f"{s.label} frontend", [fep])
    bep = s.add(Proc("backend", be, d, f"{tag}-be.log", env=env))
    wait_until(lambda: "is live" in bep.log_text(), 20, f"{s.label} kite", [fep, bep])
    s.ready()
    return s


def haproxy_config(listen_port, upstream_port, splice):
    """One HAProxy relay hop: TCP mode, one thread, no logging, 127.0.0.1 only."""
    if splice:
        opts = "  option splice-request\n  option splice-response\n"
    else:
        opts = "  no option splice-request\n  no option splice-response\n"
    return f"""# generated by bench/harness.py
global
  nbthread 1
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
{opts}  no option splice-auto
listen relay
  bind {HOST}:{listen_port}
  server upstream {HOST}:{upstream_port}
"""


def start_haproxy(ctx, splice):
    """Two chained HAProxy instances: `frontend` (the public port) → `backend` → origin."""
    d, ha = ctx["workdir"], which("haproxy")
    key = "haproxy-splice" if splice else "haproxy-copy"
    s = System(key, f"HAProxy {ctx['versions']['haproxy']}, " + ("splice" if splice else "no splice"))
    s.port = free_port()
    mid = free_port()
    procs = []
    # The backend (next to the origin) first, so the frontend's first connection finds it.
    for role, port, up in (("backend", mid, ctx["origin_port"]), ("frontend", s.port, mid)):
        name = f"{key}-{role}.cfg"
        text = haproxy_config(port, up, splice)
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
        s.files[name] = text
        procs.append(s.add(Proc(role, [ha, "-db", "-f", os.path.join(d, name)], d,
                                f"{key}-{role}.log")))
        wait_until(lambda: port_listening(port), 15, f"{s.label} {role}", procs)
    # Tables list the public side first, as for the tunnels.
    s.procs = {r: s.procs[r] for r in ("frontend", "backend")}
    s.ready()
    return s


def start_pagekite(ctx):
    d = ctx["workdir"]
    s = System("pagekite", f"pagekite.py {ctx['versions']['pagekite']}", slow=True)
    s.port = free_port()
    pk = which("pagekite")
    fe = [pk, "--clean", "--isfrontend", f"--host={HOST}", f"--ports={s.port}", "--protos=http",
          f"--domain=http:{KITE}:{SECRET}", "--nullui", f"--logfile={d}/pagekite-fe.log"]
    be = [pk, "--clean", f"--frontend={HOST}:{s.port}",
          f"--service_on=http:{KITE}:{HOST}:{ctx['origin_port']}:{SECRET}", "--nullui",
          f"--logfile={d}/pagekite-be.log"]
    fep = s.add(Proc("frontend", fe, d, "pagekite-fe.out"))
    wait_until(lambda: port_listening(s.port), 20, "pagekite.py frontend", [fep])
    s.add(Proc("backend", be, d, "pagekite-be.out"))
    s.ready(timeout=60)
    return s


def start_rathole(ctx, noise):
    d, bin_ = ctx["workdir"], ctx["bins"]["rathole"]
    tag = "rathole-noise" if noise else "rathole"
    s = System(tag, f"rathole {RATHOLE_VERSION}, " + ("noise" if noise else "tcp"))
    s.port = free_port()
    ctrl = free_port()
    server_tr = client_tr = ""
    if noise:
        priv, pub = ctx["noise_keys"]
        server_tr = f'[server.transport]\ntype = "noise"\n[server.transport.noise]\nlocal_private_key = "{priv}"\n'
        client_tr = f'[client.transport]\ntype = "noise"\n[client.transport.noise]\nremote_public_key = "{pub}"\n'
    server = (f'[server]\nbind_addr = "{HOST}:{ctrl}"\ndefault_token = "{SECRET}"\n{server_tr}'
              f'[server.services.bench]\nbind_addr = "{HOST}:{s.port}"\n')
    client = (f'[client]\nremote_addr = "{HOST}:{ctrl}"\ndefault_token = "{SECRET}"\n{client_tr}'
              f'[client.services.bench]\nlocal_addr = "{HOST}:{ctx["origin_port"]}"\n')
    for name, text in ((f"{tag}-server.toml", server), (f"{tag}-client.toml", client)):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
        s.files[name] = re.sub(r'(_key = )"[^"]+"', r'\1"<generated by rathole --genkey>"', text)
    sp = s.add(Proc("frontend", [bin_, "--server", os.path.join(d, f"{tag}-server.toml")], d, f"{tag}-server.log"))
    wait_until(lambda: port_listening(ctrl), 15, f"{s.label} server", [sp])
    s.add(Proc("backend", [bin_, "--client", os.path.join(d, f"{tag}-client.toml")], d, f"{tag}-client.log"))
    s.ready()
    return s


def start_bore(ctx):
    d, bin_ = ctx["workdir"], ctx["bins"]["bore"]
    s = System("bore", f"bore {BORE_VERSION}")
    if port_listening(BORE_CONTROL_PORT):
        raise BenchError(f"bore's fixed control port {BORE_CONTROL_PORT} is taken")
    s.port = free_port()
    sp = s.add(Proc("frontend", [bin_, "server", "--bind-addr", HOST, "--min-port", s.port,
                                 "--max-port", s.port, "--secret", SECRET], d, "bore-server.log"))
    wait_until(lambda: port_listening(BORE_CONTROL_PORT), 15, "bore server", [sp])
    s.add(Proc("backend", [bin_, "local", ctx["origin_port"], "--local-host", HOST, "--to", HOST,
                           "--port", s.port, "--secret", SECRET], d, "bore-client.log"))
    s.ready()
    return s


def make_certs(d):
    c = os.path.join(d, "certs")
    os.makedirs(c)
    with open(os.path.join(c, "req.cnf"), "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = placeholder\n"
                "[ca_ext]\nbasicConstraints = critical, CA:TRUE\n"
                "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n")
    with open(os.path.join(c, "leaf.ext"), "w") as f:
        f.write("[ext]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                f"extendedKeyUsage = serverAuth\nsubjectAltName = DNS:{FE_CERTNAME}\n"
                "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-config", "req.cnf"]
    run(["openssl", "req", "-x509", "-new"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-extensions", "ca_ext", "-subj", "/CN=rkite bench CA"], cwd=c)
    run(["openssl", "req", "-new"] + ec + ["-keyout", "leaf.key", "-out", "leaf.csr",
        "-subj", f"/CN={FE_CERTNAME}"], cwd=c)
    run(["openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-set_serial", str(int(time.time())), "-days", "2", "-extfile", "leaf.ext",
         "-extensions", "ext", "-out", "leaf.pem"], cwd=c)
    combined = os.path.join(c, "combined.pem")
    with open(combined, "wb") as out:
        for part in ("leaf.key", "leaf.pem", "ca.pem"):
            with open(os.path.join(c, part), "rb") as f:
                out.write(f.read())
    return {"ca": os.path.join(c, "ca.pem"), "combined": combined}


def rathole_keys(bin_):
    out = run([bin_, "--genkey"]).stdout
    m = re.search(r"Private Key:\s*(\S+)\s*Public Key:\s*(\S+)", out)
    if not m:
        raise BenchError(f"cannot read rathole --genkey output:\n{out}")
    return m.group(1), m.group(2)


STARTERS = {
    "direct": start_direct,
    "rkite": lambda ctx: start_rkite(ctx, tls=False, splice=True),
    "rkite-copy": lambda ctx: start_rkite(ctx, tls=False, splice=False),
    "rkite-tls": lambda ctx: start_rkite(ctx, tls=True),
    "haproxy-splice": lambda ctx: start_haproxy(ctx, splice=True),
    "haproxy-copy": lambda ctx: start_haproxy(ctx, splice=False),
    "pagekite": start_pagekite,
    "rathole": lambda ctx: start_rathole(ctx, noise=False),
    "rathole-noise": lambda ctx: start_rathole(ctx, noise=True),
    "bore": start_bore,
}
ALL_SYSTEMS = list(STARTERS)
PEERS = ["pagekite", "rathole", "rathole-noise", "bore"]


# --------------------------------------------------------------------------- measuring


class Bench:
    def __init__(self, args, prof, origin, ctx):
        self.args = args
        self.prof = prof
        self.origin = origin
        self.origin_pids = origin.procs["origin"].pids()
        self.records = []  # one per load run
        self.partial = None
        self.failures = []
        self.dead = set()
        self.restarts = {}
        self.ctx = ctx

    def measured(self, system, load, fn):
        """Run fn() with CPU (per process, and the waited clients) and peak RSS recorded."""
        roles = {r: p.pids() for r, p in system.procs.items()}
        for pids in roles.values():
            for pid in pids:
                reset_hwm(pid)
        cpu0 = {r: cpu_seconds(p) for r, p in roles.items()}
        o0 = cpu_seconds(self.origin_pids)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0 = machine_busy_seconds()
        t0 = time.monotonic()
        res = fn()
        wall = time.monotonic() - t0
        busy1 = machine_busy_seconds()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res.update(system=system.key, load=load, wall=wall,
                   cpu={r: cpu_seconds(p) - cpu0[r] for r, p in roles.items()},
                   origin_cpu=cpu_seconds(self.origin_pids) - o0,
                   client_cpu=(ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
                   hwm={r: max((status_kib(pid, "VmHWM") or 0) for pid in p) for r, p in roles.items()})
        # CPU that processes outside this measurement used meanwhile (noise indicator).
        ours = sum(res["cpu"].values()) + res["origin_cpu"] + res["client_cpu"]
        res["foreign_cpu"] = max(0.0, (busy1 - busy0) - ours)
        for r, p in system.procs.items():
            if not p.alive():
                raise BenchError(f"{system.label} {r} died during {load}:\n{p.tail()}")
        self.records.append(res)
        return res

    def guarded(self, system, load, rnd):
        """One load on one system; a failure is recorded and the run goes on."""
        if system.key in self.dead:
            return
        if system.procs and not self.healthy(system, load, rnd):
            return
        try:
            {"bulk1": self.bulk1, "bulk8": self.bulk8,
             "wrk-ka": lambda s: self.wrk(s, close=False),
             "wrk-close": lambda s: self.wrk(s, close=True)}[load](system)
        except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
            self.fail(system, load, rnd, e)
            if any(not p.alive() for p in system.procs.values()):
                self.dead.add(system.key)

    def healthy(self, system, load, rnd):
        """Wait (bounded) until the system serves; restart it if it does not (pagekite.py
        can lose its tunnel after a load and take minutes to reconnect)."""
        try:
            wait_until(lambda: http_ok(system.port), 20, f"{system.label} to serve",
                       list(system.procs.values()))
            return True
        except BenchError as e:
            self.fail(system, f"before {load}", rnd, e)
        if self.restarts.get(system.key, 0) >= 3:
            self.dead.add(system.key)
            self.failures.append(f"{system.label}: given up after 3 restarts")
            return False
        self.restarts[system.key] = self.restarts.get(system.key, 0) + 1
        say(f"  restarting {system.label}")
        system.stop()
        try:
            fresh = STARTERS[system.key](self.ctx)
        except BenchError as e:
            self.fail(system, "restart", rnd, e)
            self.dead.add(system.key)
            return False
        system.__dict__.update(fresh.__dict__)
        self.failures.append(f"{system.label}: restarted before {load} in round {rnd}")
        return True

    def fail(self, system, load, rnd, err):
        msg = str(err).strip().splitlines()
        short = msg[0] if msg else repr(err)
        say(f"  {load} {system.key}: FAILED in round {rnd}: {short}")
        self.failures.append(f"{system.label}: {load} in round {rnd} failed: {short}")

    def bulk1(self, system):
        size = self.prof["slow_bulk_size"] if system.slow else self.prof["bulk_size"]
        reps = self.prof["slow_bulk_reps"] if system.slow else self.prof["bulk_reps"]
        sample = system.key in SPLICE_SYSTEMS
        for _ in range(reps):
            def go():
                if not sample:
                    out = run(curl_argv(system.url("/data.bin"), 0, size, 300), timeout=320).stdout
                    return {"bytes": size, "rate": check_curl(out, size)}
                out, pipes = curl_sampling_pipes(curl_argv(system.url("/data.bin"), 0, size, 300),
                                                 320, {r: p.pids() for r, p in system.procs.items()})
                return {"bytes": size, "rate": check_curl(out, size), "pipes": pipes}
            r = self.measured(system, "bulk1", go)
            extra = ("  pipes (peak) " + ", ".join(f"{k} {n}" for k, n in r["pipes"].items())
                     if "pipes" in r else "")
            say(f"  bulk1 {system.key:14s} {r['rate'] / 1e6:8.1f} MB/s{extra}")

    def bulk8(self, system):
        per = self.prof["slow_par_size"] if system.slow else self.prof["par_size"]

        def go():
            t0 = time.monotonic()
            ps = [subprocess.Popen(curl_argv(system.url("/data.bin"), i * per, per, 300),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=child_env()) for i in range(PAR_STREAMS)]
            outs = [p.communicate(timeout=320)[0] for p in ps]
            wall = time.monotonic() - t0
            for o in outs:
                check_curl(o, per)
            return {"bytes": per * PAR_STREAMS, "rate": per * PAR_STREAMS / wall}
        r = self.measured(system, "bulk8", go)
        say(f"  bulk8 {system.key:14s} {r['rate'] / 1e6:8.1f} MB/s")

    def wrk(self, system, close):
        load = "wrk-close" if close else "wrk-ka"

        def go():
            secs = self.prof["wrk_secs"]
            out = run(wrk_argv(system.url("/page.html"), secs, close), timeout=secs + 60).stdout
            return parse_wrk(out)
        r = self.measured(system, load, go)
        say(f"  {load:9s} {system.key:14s} {r['rps']:9.0f} req/s  p50 {r['p50']} ms  "
            f"p99 {r['p99']} ms  errors {r['errors']}  non-2xx {r['non2xx']}")


def settle_rss(systems, max_wait=5.0):
    """VmRSS per (system, role) once it has not changed for a second (bounded)."""
    deadline = time.monotonic() + max_wait
    last, stable_since = None, time.monotonic()
    while True:
        cur = {(s.key, r): sum(status_kib(pid, "VmRSS") or 0 for pid in p.pids())
               for s in systems for r, p in s.procs.items()}
        now = time.monotonic()
        if cur != last:
            last, stable_since = cur, now
        if now - stable_since >= 1.0 or now >= deadline:
            return cur
        time.sleep(0.2)


def rkite_stats(system):
    """Ask both rkite processes for their SIGUSR2 stats line (bounded wait)."""
    lines = []
    for r, p in system.procs.items():
        before = p.log_text().count("stats:")
        os.kill(p.pid, signal.SIGUSR2)
        try:
            wait_until(lambda: p.log_text().count("stats:") > before, 3, "stats line")
            line = [ln for ln in p.log_text().splitlines() if "stats:" in ln][-1]
            lines.append(f"{r}: {line.split('stats:', 1)[1].strip()}")
        except BenchError:
            pass
    return lines


def idle_streams(system, n):
    """RSS growth per open idle keep-alive stream, per process (KiB)."""
    pids = [pid for p in system.procs.values() for pid in p.pids()]
    socks_before = len(_sock_inodes(pids))
    before = settle_rss([system])
    for pid in pids:
        reset_hwm(pid)
    socks = []
    try:
        socks, err = open_idle_streams(system.port, n)
        after = settle_rss([system])
        stats = rkite_stats(system) if system.key.startswith("rkite") else []
        hwm = {r: max((status_kib(pid, "VmHWM") or 0) for pid in p.pids())
               for r, p in system.procs.items()}
    finally:
        for s in socks:
            s.close()
    opened = len(socks)
    # Let the system drop the closed streams before the next measurement (bounded).
    try:
        wait_until(lambda: len(_sock_inodes(pids)) <= socks_before + 2, 15,
                   f"{system.label} to close the idle streams")
    except BenchError:
        say(f"  {system.label} still holds {len(_sock_inodes(pids)) - socks_before} extra sockets")
    per = {r: ((after[(system.key, r)] - before[(system.key, r)]) / opened if opened else None)
           for r in system.procs}
    return {"opened": opened, "wanted": n, "error": err, "per_stream_kib": per,
            "rss_after": {r: after[(system.key, r)] for r in system.procs}, "hwm": hwm,
            "stats": stats}


def iperf(prof, streams):
    port = free_port()
    d = tempfile.mkdtemp(prefix="rkite-iperf-")
    srv = Proc("iperf3-server", ["iperf3", "-s", "-B", HOST, "-p", port, "-1"], d, "iperf3.log")
    try:
        wait_until(lambda: port_listening(port), 10, "iperf3 server", [srv])
        audit_listeners("iperf3", [srv])
        argv = ["iperf3", "-c", HOST, "-p", port, "-t", prof["iperf_secs"], "-P", streams, "-J"]
        out = run(argv, timeout=prof["iperf_secs"] + 30).stdout
        bps = json.loads(out)["end"]["sum_received"]["bits_per_second"]
        return bps / 8, shlex.join(map(str, argv))
    finally:
        srv.stop()
        RUNNING.remove(srv) if srv in RUNNING else None
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- aggregation


def agg(records, key, load):
    rs = [r for r in records if r["system"] == key and r["load"] == load]
    if not rs:
        return None
    roles = list(rs[0]["cpu"])
    out = {"n": len(rs), "roles": roles,
           "cpu": {r: sum(x["cpu"][r] for x in rs) for r in roles},
           "origin_cpu": sum(x["origin_cpu"] for x in rs),
           "client_cpu": sum(x["client_cpu"] for x in rs),
           "hwm": {r: max(x["hwm"][r] for x in rs) for r in roles}}
    out["tunnel_cpu"] = sum(out["cpu"].values())
    out["noise"] = sum(x["foreign_cpu"] for x in rs) / max(1e-9, sum(x["wall"] for x in rs))
    if load.startswith("bulk"):
        rates = [x["rate"] for x in rs]
        out.update(rate=statistics.median(rates), rmin=min(rates), rmax=max(rates),
                   rates=rates, bytes=sum(x["bytes"] for x in rs))
        out["size"] = rs[0]["bytes"]
        out["unit"] = out["bytes"] / GIB  # per GiB
    else:
        out.update(rps=statistics.median(x["rps"] for x in rs),
                   rps_all=[x["rps"] for x in rs],
                   p50=statistics.median(x["p50"] for x in rs if x["p50"] is not None) if any(x["p50"] is not None for x in rs) else None,
                   p99=statistics.median(x["p99"] for x in rs if x["p99"] is not None) if any(x["p99"] is not None for x in rs) else None,
                   p99min=min((x["p99"] for x in rs if x["p99"] is not None), default=None),
                   errors=sum(x["errors"] for x in rs), non2xx=sum(x["non2xx"] for x in rs),
                   err_detail={k: sum(x.get("err_detail", {}).get(k, 0) for x in rs)
                               for k in ("connect", "read", "write", "timeout")},
                   requests=sum(x["requests"] for x in rs))
        out["unit"] = out["requests"] / 1e6 if out["requests"] else None  # per request, in µs
    return out


def issue15_checks(records):
    """Issue 15's targets, from this run's records: [(target, measured, ok or None)]."""
    def one(k):
        a = agg(records, k, "bulk1")
        if not a:
            return None, None
        return a["rate"], (a["tunnel_cpu"] / a["unit"] if a.get("unit") else None)

    (rk, rk_cpu), (ha, ha_cpu) = one("rkite"), one("haproxy-splice")
    (rc, rc_cpu), (hc, hc_cpu) = one("rkite-copy"), one("haproxy-copy")
    ctx_rate = ", ".join(f"{who} {f_num(x / 1e6)}" for who, x in
                         (("rkite", rc), ("HAProxy", hc)) if x is not None)
    ctx_cpu = ", ".join(f"{who} {f_num(x, 3)}" for who, x in
                        (("rkite", rc_cpu), ("HAProxy", hc_cpu)) if x is not None)
    return [
        ("issue 15: one-stream bulk, rkite plain (splice) ≥ HAProxy with splicing",
         f"{f_num(rk and rk / 1e6)} vs {f_num(ha and ha / 1e6)} MB/s: {f_ratio(rk, ha)}"
         + (f" (without splicing: {ctx_rate} MB/s)" if ctx_rate else ""),
         None if rk is None or ha is None else rk >= ha),
        ("issue 15: CPU per GiB (one stream), rkite plain (splice) frontend+backend ≤ "
         "HAProxy with splicing, both instances",
         f"{f_num(rk_cpu, 3)} vs {f_num(ha_cpu, 3)} s/GiB: {f_ratio(rk_cpu, ha_cpu)}"
         + (f" (without splicing: {ctx_cpu} s/GiB)" if ctx_cpu else ""),
         None if rk_cpu is None or ha_cpu is None else rk_cpu <= ha_cpu),
    ]


# --------------------------------------------------------------------------- report


def f_num(v, digits=None):
    if v is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2)
    return f"{v:,.{digits}f}"


def f_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    r = a / b
    return f"{r:.0f}×" if r >= 100 else (f"{r:.1f}×" if r >= 10 else f"{r:.2f}×")


def f_mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:.1f}"


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / MIB:.0f} GiB"
    debian = "?"
    if os.path.exists("/etc/debian_version"):
        with open("/etc/debian_version") as f:
            debian = f.read().strip()
    return {"cores": len(os.sched_getaffinity(0)), "model": model, "kernel": platform.release(),
            "mem": mem, "debian": debian, "loadavg": os.getloadavg()}


def git_rev():
    r = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=False)
    rev = r.stdout.strip() or "?"
    d = run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
            check=False)
    return rev + (" + uncommitted changes in src/" if d.stdout.strip() else "")


def binary_sizes(ctx):
    rows = []
    items = [("rkite", ctx["rkite"]), ("rathole", ctx["bins"].get("rathole")),
             ("bore", ctx["bins"].get("bore")), ("haproxy", which("haproxy"))]
    for name, path in items:
        if not path or not os.path.exists(path):
            continue
        size = os.path.getsize(path)
        stripped = None
        with tempfile.TemporaryDirectory() as t:
            r = run(["strip", "-o", os.path.join(t, "b"), path], check=False)
            if r.returncode == 0:
                stripped = os.path.getsize(os.path.join(t, "b"))
        libs = ""
        if shutil.which("readelf"):
            out = run(["readelf", "-d", path], check=False).stdout
            libs = ", ".join(re.findall(r"Shared library: \[([^\]]+)\]", out))
        rows.append((name, size, stripped, libs))
    return rows


def pipes_table(w, bench, systems, label, idle):
    """Whether splicing was in effect: pipes each process held at idle and at peak during
    the one-stream downloads (a relay that splices holds pipes while bytes are in flight)."""
    rows = []
    for s in systems:
        k = s.key
        if k not in SPLICE_SYSTEMS:
            continue
        rs = [r for r in bench.records if r["system"] == k and r["load"] == "bulk1" and "pipes" in r]
        if not rs:
            continue
        for role in rs[0]["pipes"]:
            rows.append([label[k], role, f_num(s.pipes_start.get(role), 0),
                         f_num(idle.get((k, role)), 0),
                         f_num(max(r["pipes"][role] for r in rs), 0)])
    if not rows:
        return
    w("Whether splicing was in effect: pipes each process held (`/proc/PID/fd`) once up, "
      "before its first request; after a few page requests (the `idle` point); and at peak during the one-stream "
      "downloads (sampled every 0.1 s). A process that splices holds pipes while bytes are in "
      "flight (HAProxy also keeps them pooled afterwards); one that copies holds only the few "
      "it always has. Compare each splice row with its no-splice row.\n")
    w(md_table(["system", "process", "pipes at start", "after a few requests", "peak during one-stream"],
               rows))
    w("")


def write_results(path, ctx, systems, bench, idle, idle_after, streams, iperf_res,
                  sizes, started, duration, notes):
    P = ctx["prof"]
    keys = [s.key for s in systems]
    label = {s.key: s.label for s in systems}
    slow = {s.key: s.slow for s in systems}
    A = {(k, load): agg(bench.records, k, load) for k in keys
         for load in ("bulk1", "bulk8", "wrk-ka", "wrk-close")}
    m = ctx["machine"]
    L = []
    w = L.append
    w("# Benchmark results\n")
    w("Written by `make bench` (`bench/harness.py`); a rerun overwrites this file. "
      "How to read it:\n")
    w("- Every system runs in the same run on the same machine, all on 127.0.0.1; the loads run "
      "in rounds, each round every load on every system in an order that rotates, so drift "
      "hits all alike. Medians are over every run of a figure.")
    w("- **× direct** is the system's figure over direct loopback's (no tunnel). **rkite ÷** "
      "columns divide rkite's figure by that row's: above 1 means rkite is faster (throughput, "
      "req/s) or uses more (latency, CPU, memory: there below 1 is better).")
    w(f"- On {m['cores']} cores the origin, the client (curl, wrk) and both tunnel processes "
      "compete, so throughput and requests per second largely measure the machine; compare "
      "tunnels by their **CPU per unit of work**, reported per process.")
    w("- `frontend` is the public side (rkite/pagekite.py frontend, rathole server, bore server, "
      "the first HAProxy); `backend` the side next to the origin (rkite/pagekite.py backend, "
      "rathole client, bore local, the second HAProxy). CPU is utime+stime from /proc/PID/stat; peak RSS is VmHWM, reset with "
      "`echo 5 > /proc/PID/clear_refs` before each load.")
    if any(slow.values()):
        w(f"- pagekite.py is about a thousand times slower, so it moves smaller transfers "
          f"({P['slow_bulk_size'] // MIB} MiB one-stream, {PAR_STREAMS} × {P['slow_par_size'] // MIB} MiB "
          f"parallel, instead of {P['bulk_size'] // MIB} MiB and {PAR_STREAMS} × {P['par_size'] // MIB} MiB); "
          "its per-GiB figures are scaled from those.")
    w("- **noise**: CPU (in cores) that the machine spent outside the measured processes while "
      "that row was measured: other programs, and kernel network work not charged to a process. "
      "High noise means the row's figures are pessimistic; p99 latency suffers most, hence the "
      "best-run p99 column.")
    w("- The payload is a 1 GiB file of random bytes (incompressible: pagekite.py compresses "
      "tunnel data with zlib, which would turn a sparse file of zeros into almost nothing).\n")
    w(f"Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; whole run {duration / 60:.1f} min "
      f"(profile `{ctx['profile']}`).  ")
    w(f"Machine: {m['cores']} cores, {m['model']}, {m['mem']} RAM, Linux {m['kernel']}, "
      f"Debian {m['debian']}; load average before the run "
      f"{m['loadavg'][0]:.2f} / {m['loadavg'][1]:.2f} / {m['loadavg'][2]:.2f}.  ")
    w(f"rkite: commit {ctx['rev']}, `{os.path.relpath(ctx['rkite_src'], REPO)}` (release profile, "
      f"copied to the work directory for the run). "
      f"Peers: {', '.join(f'{k} {v}' for k, v in ctx['versions'].items())}.")
    if iperf_res:
        w(f"Loopback ceiling (iperf3, no HTTP): one stream {iperf_res[0][0] / 1e6:,.0f} MB/s, "
          f"{PAR_STREAMS} streams {iperf_res[1][0] / 1e6:,.0f} MB/s.")
    fr = [(r["foreign_cpu"], r["wall"]) for r in bench.records]
    if fr:
        w(f"Noise: with every system idle the machine was busy {ctx.get('background', 0):.2f} cores "
          "(other programs); during the measurements, CPU not charged to the measured processes "
          f"averaged {sum(a for a, _ in fr) / sum(b for _, b in fr):.2f} cores (other programs plus "
          "kernel network work done outside process context).")
    if bench.partial:
        w(f"\n**Partial run:** {bench.partial}")
    w("")

    def v(k, load, field):
        a = A.get((k, load))
        return a.get(field) if a else None

    # ---- targets
    def best(peers, load, field, lower=False):
        vals = [(v(p, load, field), p) for p in peers if v(p, load, field) is not None]
        if not vals:
            return None, None
        return (min if lower else max)(vals)

    def cpu_unit(k, load):
        a = A.get((k, load))
        return a["tunnel_cpu"] / a["unit"] if a and a.get("unit") else None

    T = []
    b_val, b_who = best(["bore", "rathole"], "bulk1", "rate")
    r = v("rkite", "bulk1", "rate")
    T.append(("one-stream bulk, plain ≥ 1.2 × best of bore/rathole",
              f"{f_num(r and r / 1e6)} vs {f_num(b_val and b_val / 1e6)} MB/s ({b_who}): {f_ratio(r, b_val)}",
              r is not None and b_val is not None and r >= 1.2 * b_val))
    rn, rt = v("rathole-noise", "bulk1", "rate"), v("rkite-tls", "bulk1", "rate")
    T.append(("one-stream bulk, TLS ≥ 1.5 × rathole noise",
              f"{f_num(rt and rt / 1e6)} vs {f_num(rn and rn / 1e6)} MB/s: {f_ratio(rt, rn)}",
              rt is not None and rn is not None and rt >= 1.5 * rn))
    pk = v("pagekite", "bulk1", "rate")
    T.append(("one-stream bulk, plain ≥ 100 × pagekite.py",
              f"{f_num(r and r / 1e6)} vs {f_num(pk and pk / 1e6)} MB/s: {f_ratio(r, pk)}",
              r is not None and pk is not None and r >= 100 * pk))
    for load, what, unit in (("bulk1", "CPU per GiB (one stream)", "s/GiB"),
                             ("bulk8", f"CPU per GiB ({PAR_STREAMS} streams)", "s/GiB"),
                             ("wrk-ka", "CPU per request (keep-alive)", "µs/request"),
                             ("wrk-close", "CPU per request (new connection)", "µs/request")):
        mine = cpu_unit("rkite", load)
        peers = [(cpu_unit(p, load), p) for p in ("bore", "rathole") if cpu_unit(p, load) is not None]
        ok = None if mine is None or not peers else all(mine < c for c, _ in peers)
        T.append((f"tunnel {what}, frontend+backend, below bore's and rathole's",
                  f"{f_num(mine, 2)} vs " + ", ".join(f"{p} {f_num(c, 2)}" for c, p in peers) + f" {unit}",
                  ok))
    for load, what in (("wrk-ka", "keep-alive"), ("wrk-close", "new connection")):
        mine = v("rkite", load, "p99")
        bp, who = best(PEERS, load, "p99", lower=True)
        bmin, whomin = best(PEERS, load, "p99min", lower=True)
        T.append((f"p99 under wrk ({what}) no worse than the best peer's",
                  f"median {f_num(mine)} vs {f_num(bp)} ms ({who}); best runs "
                  f"{f_num(v('rkite', load, 'p99min'))} vs {f_num(bmin)} ms ({whomin})",
                  mine is not None and bp is not None and mine <= bp))
    for k in ("rkite", "rkite-tls"):
        if k not in keys:
            continue
        idle_kib = [idle.get((k, role)) for role in ("frontend", "backend")]
        loads = [A.get((k, l)) for l in ("bulk1", "bulk8", "wrk-ka", "wrk-close")]
        peak = {}
        for role in ("frontend", "backend"):
            cand = [(a["hwm"][role], l) for a, l in zip(loads, ("bulk1", "bulk8", "wrk-ka", "wrk-close")) if a]
            st = streams.get(k)
            if st:
                cand.append((st["hwm"][role], f"{st['opened']} idle streams"))
            peak[role] = max(cand) if cand else (None, None)
        T.append((f"{label[k]}: RSS ≤ 2 MiB idle, per process",
                  " / ".join(f"{f_mib(x)}" for x in idle_kib) + " MiB (frontend / backend)",
                  all(x is not None and x <= 2048 for x in idle_kib)))
        T.append((f"{label[k]}: RSS ≤ 8 MiB at full load, per process",
                  " / ".join(f"{f_mib(peak[r][0])} ({peak[r][1]})" for r in ("frontend", "backend")) + " MiB",
                  all(peak[r][0] is not None and peak[r][0] <= 8192 for r in ("frontend", "backend"))))
    T += issue15_checks(bench.records)
    w("## rkite's targets\n")
    w(md_table(["target", "measured", "met?"],
               [(t, mval, "n/a" if "n/a" in mval or ok is None else "yes" if ok else "**no**")
                for t, mval, ok in T]))
    w("")

    # ---- throughput tables
    def ratio_cols(k, load, field):
        cells = [f_ratio(v(k, load, field), v("direct", load, field)) if "direct" in keys else "n/a"]
        for mine in ("rkite", "rkite-tls"):
            if mine in keys:
                cells.append(f_ratio(v(mine, load, field), v(k, load, field)) if k != mine else "—")
        return cells

    rk_cols = [f"{x} ÷" for x in ("rkite plain", "rkite TLS") if (x == "rkite plain" and "rkite" in keys) or (x == "rkite TLS" and "rkite-tls" in keys)]

    for load, title, desc in (
            ("bulk1", "One-stream bulk throughput",
             f"One curl download of {P['bulk_size'] // MIB} MiB (pagekite.py: {P['slow_bulk_size'] // MIB} MiB); median of all runs, MB/s = 10⁶ bytes/s."),
            ("bulk8", f"{PAR_STREAMS} parallel streams",
             f"{PAR_STREAMS} curls at once, each {P['par_size'] // MIB} MiB of a different range (pagekite.py: {P['slow_par_size'] // MIB} MiB); aggregate = all bytes / wall time.")):
        w(f"## {title}\n\n{desc}\n")
        rows = []
        for k in keys:
            a = A.get((k, load))
            if not a:
                continue
            rng = ", ".join(f"{x / 1e6:,.0f}" if x >= 1e7 else f"{x / 1e6:.1f}" for x in a["rates"])
            rows.append([label[k], f"**{f_num(a['rate'] / 1e6)}**", rng] + ratio_cols(k, load, "rate")
                        + [f"{a['noise']:.2f}"])
        w(md_table(["system", "MB/s (median)", "all runs", "× direct"] + rk_cols + ["noise"], rows))
        w("")
        if load == "bulk1":
            pipes_table(w, bench, systems, label, ctx.get("pipes_idle") or {})

    for load, title in (("wrk-ka", "HTTP requests, keep-alive"),
                        ("wrk-close", "HTTP requests, a new connection per request")):
        w(f"## {title}\n")
        w(f"`wrk -t{WRK_THREADS} -c{WRK_CONNS} -d{P['wrk_secs']}s --latency` for a {PAGE_SIZE}-byte page"
          + (" with `Connection: close`" if load == "wrk-close" else "")
          + f"; medians over {P['rounds']} run(s). Latency ratios: below 1 means rkite is faster.\n")
        rows = []
        for k in keys:
            a = A.get((k, load))
            if not a:
                continue
            ed = a["err_detail"]
            errs = ("0" if not a["errors"] else
                    ", ".join(f"{n} {k}" for k, n in ed.items() if n)) + f" / {a['non2xx']}"
            cells = [label[k], f"**{f_num(a['rps'])}**", f_num(a["p50"], 2), f_num(a["p99"], 2),
                     f_num(a["p99min"], 2), errs]
            cells.append(f_ratio(a["rps"], v("direct", load, "rps")) if "direct" in keys else "n/a")
            for mine in ("rkite", "rkite-tls"):
                if mine in keys:
                    cells.append("—" if k == mine else
                                 f"{f_ratio(v(mine, load, 'rps'), a['rps'])} / {f_ratio(v(mine, load, 'p99'), a['p99'])}")
            cells.append(f"{a['noise']:.2f}")
            rows.append(cells)
        w(md_table(["system", "req/s", "p50 ms", "p99 ms", "best-run p99 ms", "socket errors / non-2xx",
                    "req/s × direct"] + [f"{c} (req/s / p99)" for c in rk_cols] + ["noise"], rows))
        w("")

    # ---- CPU
    w("## CPU per unit of work, per process\n")
    w("CPU seconds (user + system) per GiB moved, or CPU microseconds per request, summed over "
      "all runs of the load. `tunnel` = frontend + backend. `origin` is nginx, `client` is curl or wrk. "
      "`path` = tunnel + origin + client: on loopback the receiving half of a hop runs in whichever "
      "process makes the sender transmit (the sender, or the receiver whose ACK releases data that "
      "waited), so work moves between the other columns with which end is backlogged; `path` does "
      "not depend on that. The rkite ÷ columns compare tunnel CPU (below 1: rkite uses less).\n")
    for load, unit in (("bulk1", "s/GiB, one stream"), ("bulk8", f"s/GiB, {PAR_STREAMS} streams"),
                       ("wrk-ka", "µs per request, keep-alive"),
                       ("wrk-close", "µs per request, new connection each")):
        w(f"### {unit}\n")
        rows = []
        for k in keys:
            a = A.get((k, load))
            if not a or not a["unit"]:
                continue
            u = a["unit"]
            fe = a["cpu"].get("frontend")
            be = a["cpu"].get("backend")
            tun = a["tunnel_cpu"] / u if a["roles"] else None
            dg = 3 if load.startswith("bulk") else 1
            cells = [label[k], f_num(fe / u if fe is not None else None, dg),
                     f_num(be / u if be is not None else None, dg),
                     f"**{f_num(tun, dg)}**" if tun is not None else "—",
                     f_num(a["origin_cpu"] / u, dg), f_num(a["client_cpu"] / u, dg),
                     f_num(((a["tunnel_cpu"] if a["roles"] else 0) + a["origin_cpu"]
                            + a["client_cpu"]) / u, dg)]
            for mine in ("rkite", "rkite-tls"):
                if mine in keys:
                    cells.append("—" if k == mine or tun is None else f_ratio(cpu_unit(mine, load), tun))
            rows.append(cells)
        w(md_table(["system", "frontend", "backend", "tunnel", "origin", "client", "path"] + rk_cols,
                   rows))
        w("")

    # ---- memory
    w("## Memory per process (MiB)\n")
    w("`idle`: VmRSS after start-up and a few requests, once it stopped changing; then the peak "
      "(VmHWM, reset before each load) under each load, maximum over the runs; "
      f"`idle streams`: peak while {P['idle_streams']} idle keep-alive connections are open "
      "(measured before the loads); `idle after`: VmRSS after all loads, settled.\n")
    rows = []
    for k in keys:
        for role in [s for s in systems if s.key == k][0].procs:
            cells = [label[k], role, f_mib(idle.get((k, role)))]
            for load in ("bulk1", "bulk8", "wrk-ka", "wrk-close"):
                a = A.get((k, load))
                cells.append(f_mib(a["hwm"][role]) if a else "n/a")
            st = streams.get(k)
            cells.append(f_mib(st["hwm"][role]) if st else "n/a")
            cells.append(f_mib(idle_after.get((k, role))))
            rows.append(cells)
    w(md_table(["system", "process", "idle", "bulk 1 stream", f"bulk {PAR_STREAMS} streams",
                "wrk keep-alive", "wrk new conn", "idle streams", "idle after"], rows))
    w("")

    det = ctx.get("idle_detail") or {}
    if det:
        w("Idle RSS split (MiB, from /proc/PID/status at the `idle` point): `anon` is heap and "
          "stacks, `file` is mapped pages of the binary and shared libraries.\n")
        rows = []
        for k in keys:
            for role in [s for s in systems if s.key == k][0].procs:
                d = det.get((k, role))
                if d:
                    rows.append([label[k], role, f_mib(idle.get((k, role))), f_mib(d["RssAnon"]),
                                 f_mib(d["RssFile"]), f_mib(d["RssShmem"])])
        w(md_table(["system", "process", "idle RSS", "anon", "file", "shmem"], rows))
        w("")

    w("## Memory per idle stream\n")
    w(f"{P['idle_streams']} keep-alive connections (pagekite.py: {P['slow_idle_streams']}, as it takes "
      "about a second to open each) opened through the tunnel one by one, each "
      "after one request, then held: (VmRSS with them − VmRSS before) / connections, in KiB. "
      "Measured right after start-up, before any load, so that memory freed by earlier loads "
      "cannot hide the cost.\n")
    rows = []
    for k in keys:
        st = streams.get(k)
        if not st:
            continue
        per = st["per_stream_kib"]
        tot = sum(x for x in per.values() if x is not None) if per else None
        cells = [label[k], f"{st['opened']} of {st['wanted']}" + (f" ({st['error']})" if st["error"] else ""),
                 f_num(per.get("frontend"), 1), f_num(per.get("backend"), 1), f"**{f_num(tot, 1)}**"]
        for mine in ("rkite", "rkite-tls"):
            if mine in keys:
                mt = streams.get(mine)
                mtot = sum(x for x in mt["per_stream_kib"].values() if x is not None) if mt else None
                cells.append("—" if k == mine else f_ratio(mtot, tot) if tot else "n/a")
        rows.append(cells)
    w(md_table(["system", "streams", "frontend KiB", "backend KiB", "total KiB"] + rk_cols, rows))
    stat_lines = [(k, streams[k]["stats"]) for k in keys if streams.get(k) and streams[k]["stats"]]
    if stat_lines:
        w("\nrkite's own SIGUSR2 `stats:` lines while the streams were open:\n")
        for k, lines in stat_lines:
            for ln in lines:
                w(f"- {label[k]} {ln}")
    w("")

    if ctx.get("codec"):
        w("## Codec micro-bench\n")
        w("`cargo bench --bench frame` (release profile), run by `make bench` just before the harness:\n")
        w("```\n" + ctx["codec"].strip() + "\n```\n")

    w("## Binary size\n")
    rows = []
    for name, size, stripped, libs in sizes:
        rows.append([name, f"{size / KIB:,.0f}", f"{stripped / KIB:,.0f}" if stripped else "n/a",
                     libs or "n/a", f_ratio(sizes[0][2] or sizes[0][1], stripped or size) if name != "rkite" else "—"])
    w(md_table(["binary", "KiB as built", "KiB stripped", "shared libraries", "rkite ÷"], rows))
    w(f"\npagekite.py is Python: Debian package pagekite {ctx['versions'].get('pagekite', '?')} "
      "plus the Python 3 interpreter.\n")

    # ---- commands
    w("## Exact commands\n")
    w("Ports and temporary paths are this run's. Every process runs in its own session and is "
      "stopped with SIGTERM to its process group (SIGKILL after 6 s). After start-up the harness "
      "checks every listening socket of every process it started is on 127.0.0.1.\n")
    w("```sh")
    w(f"# origin (nginx {ctx['versions'].get('nginx', '?')}), shared by every system")
    for what, cmd in bench.origin.commands:
        w(cmd)
    for s in systems:
        w(f"\n# {s.label}")
        for what, cmd in s.commands:
            w(f"{cmd}   # {what}" if what != "client" else f"# {cmd}")
        if s.listeners:
            w("#   listening: " + ", ".join(sorted({f'{ip}:{p}' for _, ip, p in s.listeners})))
    w("\n# loads (URL = the system's public port; Host: bench.test everywhere)")
    w(shlex.join(curl_argv("http://127.0.0.1:PORT/data.bin", 0, P["bulk_size"], 300)))
    w("# 8 parallel streams: " + shlex.join(curl_argv("http://127.0.0.1:PORT/data.bin", 0, P["par_size"], 300))
      + "   # ×8, -r i*SIZE-(i+1)*SIZE-1")
    w(shlex.join(wrk_argv("http://127.0.0.1:PORT/page.html", P["wrk_secs"], False)))
    w(shlex.join(wrk_argv("http://127.0.0.1:PORT/page.html", P["wrk_secs"], True)))
    if iperf_res:
        w(f"# loopback ceiling: iperf3 -s -B 127.0.0.1 -p PORT -1 ; {iperf_res[0][1]} ; {iperf_res[1][1]}")
    w("```\n")
    files = dict(bench.origin.files)
    for s in systems:
        files.update(s.files)
    for name, text in files.items():
        w(f"`{name}`:\n\n```\n{text.strip()}\n```\n")
    if notes:
        w("## Notes\n")
        for n in notes:
            w(f"- {n}")
        w("")
    # Hand-written findings kept beside the harness (profiles, binary size,
    # what other scripts measured)
    # go at the end of every report, so a rerun does not lose them.
    for extra in ("profile.md", "size.md", "notes.md"):
        extra_path = os.path.join(REPO, "bench", extra)
        if os.path.exists(extra_path):
            with open(extra_path) as f:
                w(f.read().rstrip() + "\n")
    with open(path, "w") as f:
        f.write("\n".join(L))


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short smoke run (smaller transfers, one round)")
    ap.add_argument("--rkite", default=os.path.join(REPO, "target", "release", "rkite"))
    ap.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                    help=f"comma list from {','.join(ALL_SYSTEMS)}")
    ap.add_argument("--codec", help="output of `cargo bench --bench frame`, quoted in the report")
    ap.add_argument("--rounds", type=int, help="override the profile's number of rounds")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "RESULTS.md"))
    ap.add_argument("--cache", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rkite-bench"))
    ap.add_argument("--no-install", action="store_true", help="fail instead of installing what is missing")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    ap.add_argument("--max-minutes", type=float, default=20.0,
                    help="stop starting new rounds past this (the report says so)")
    args = ap.parse_args()
    if os.path.realpath(args.cache).startswith(os.path.realpath(REPO) + os.sep):
        ap.error("--cache must be outside the repository")
    prof = dict(PROFILES["quick" if args.quick else "full"])
    if args.rounds:
        prof["rounds"] = args.rounds
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in wanted:
        if s not in STARTERS:
            ap.error(f"unknown system {s}")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    started = datetime.datetime.now(datetime.timezone.utc)
    notes = []
    workdir = tempfile.mkdtemp(prefix="rkite-bench-")
    say(f"work directory {workdir}")
    try:
        machine = machine_info()
        bins = ensure_tools(args, notes)
        if not os.path.exists(args.rkite):
            raise BenchError(f"{args.rkite} not found: run `cargo build --release` first")
        data = ensure_data(args.cache)
        # A private copy: a rebuild of target/release during the run cannot change what
        # is measured.
        os.makedirs(os.path.join(workdir, "bin"))
        rkite_bin = os.path.join(workdir, "bin", "rkite")
        shutil.copy2(args.rkite, rkite_bin)
        versions = {"pagekite": dpkg_version("pagekite"), "haproxy": dpkg_version("haproxy"),
                    "rathole": RATHOLE_VERSION,
                    "bore": BORE_VERSION, "nginx": dpkg_version("nginx-common"),
                    "wrk": dpkg_version("wrk"), "curl": dpkg_version("curl")}
        codec = None
        if args.codec and os.path.exists(args.codec):
            with open(args.codec) as f:
                codec = f.read()
        ctx = {"codec": codec, "workdir": workdir, "rkite": rkite_bin, "rkite_src": os.path.abspath(args.rkite), "bins": bins,
               "data": data, "versions": versions, "machine": machine, "rev": git_rev(),
               "prof": prof, "profile": "quick" if args.quick else "full"}

        iperf_res = None
        if "direct" in wanted:
            say("loopback ceiling with iperf3")
            iperf_res = (iperf(prof, 1), iperf(prof, PAR_STREAMS))
            say(f"  iperf3: 1 stream {iperf_res[0][0] / 1e6:,.0f} MB/s, "
                f"{PAR_STREAMS} streams {iperf_res[1][0] / 1e6:,.0f} MB/s")

        origin = start_origin(ctx)
        ctx["origin_port"] = origin.port
        say(f"origin nginx on {HOST}:{origin.port}")
        if "rkite-tls" in wanted:
            ctx["certs"] = make_certs(workdir)
        if "rathole-noise" in wanted:
            ctx["noise_keys"] = rathole_keys(bins["rathole"])

        systems = []
        for key in wanted:
            s = STARTERS[key](ctx)
            systems.append(s)
            say(f"{s.label} ready on {HOST}:{s.port}")
        # Paranoia: after everything is up, audit every process we started once more.
        for s in [origin] + systems:
            audit_listeners(s.label, s.procs.values())

        for s in systems:
            for _ in range(5):
                if not http_ok(s.port):
                    raise BenchError(f"{s.label} failed a warm-up request")
        idle = settle_rss(systems)
        ctx["pipes_idle"] = {(s.key, r): pipe_count(p.pids())
                             for s in systems if s.key in SPLICE_SYSTEMS for r, p in s.procs.items()}
        ctx["idle_detail"] = {(s.key, r): {f: sum(status_kib(pid, f) or 0 for pid in p.pids())
                                           for f in ("RssAnon", "RssFile", "RssShmem", "VmData")}
                              for s in systems for r, p in s.procs.items()}

        # Idle streams before any load, while the heaps are small: after the loads, freed
        # but still resident memory would absorb the new streams and hide their cost.
        streams = {}
        for s in systems:
            if not s.procs:
                continue
            say(f"idle streams through {s.label}")
            streams[s.key] = idle_streams(s, prof["slow_idle_streams" if s.slow else "idle_streams"])
            st = streams[s.key]
            say(f"  {st['opened']} streams: " + ", ".join(
                f"{r} {x:.1f} KiB/stream" if x is not None else f"{r} n/a"
                for r, x in st["per_stream_kib"].items()))

        bench = Bench(args, prof, origin, ctx)
        say("warm-up (page cache and first-connection effects; not recorded)")
        for s in systems:
            size = 4 * MIB if s.slow else 64 * MIB
            try:
                check_curl(run(curl_argv(s.url("/data.bin"), 0, size, 120), timeout=140).stdout, size)
                run(wrk_argv(s.url("/page.html"), 1, False), timeout=60)
            except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
                bench.fail(s, "warm-up", 0, e)

        # Background: what the machine does while every system sits idle (other programs).
        b0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(2)
        ctx["background"] = (machine_busy_seconds() - b0) / (time.monotonic() - t0)
        say(f"background load while idle: {ctx['background']:.2f} cores")

        deadline = T0 + args.max_minutes * 60
        for rnd in range(prof["rounds"]):
            if rnd > 0 and time.monotonic() > deadline:
                bench.partial = (f"stopped after {rnd} of {prof['rounds']} rounds "
                                 f"(--max-minutes {args.max_minutes}).")
                say(bench.partial)
                break
            order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
            say(f"round {rnd + 1}/{prof['rounds']}: order {', '.join(s.key for s in order)}")
            for load in ("bulk1", "bulk8", "wrk-ka", "wrk-close"):
                for s in order:
                    bench.guarded(s, load, rnd + 1)

        idle_after = settle_rss(systems)

        sizes = binary_sizes(ctx)
        for s in reversed(systems):
            s.stop()
        origin.stop()
        leftovers = [p.pid for s in [origin] + systems for p in s.procs.values() if p.alive()]
        if leftovers:
            raise BenchError(f"processes still running after teardown: {leftovers}")
        duration = time.monotonic() - T0
        write_results(args.out, ctx, systems, bench, idle, idle_after, streams, iperf_res,
                      sizes, started, duration, STATIC_NOTES + notes + bench.failures)
        with open(os.path.join(args.cache, "last-run.json"), "w") as f:
            json.dump({"records": bench.records, "streams": streams,
                       "idle": {f"{k}/{r}": v for (k, r), v in idle.items()}}, f, indent=1)
        say(f"wrote {args.out} ({duration / 60:.1f} min); raw records in {args.cache}/last-run.json")
        for target, measured, ok in issue15_checks(bench.records):
            say(f"{target}: {measured}: "
                + ("met" if ok else "NOT met" if ok is False else "not measured"))
        return 0
    except BenchError as e:
        say(f"FAILED: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        teardown_all()
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
