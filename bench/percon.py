#!/usr/bin/env python3
"""Tunnel CPU per HTTP request, new connection and keep-alive, for rkite binaries side by side.

Compares builds (typically the glibc release binary and the static musl one)
in the same run: each binary in turn carries wrk load through a frontend and
a backend on 127.0.0.1 to an nginx origin, over a plain tunnel and a TLS
tunnel, and the user+system CPU both rkite processes spent (from
/proc/PID/stat) is divided by the requests wrk completed. Binaries built with
the `count-allocs` feature also report heap allocations per request (from
the SIGUSR2 stats line). Rounds alternate the order of the binaries so a
drift of the machine does not favour one. Loopback only, bounded in time:
about rounds × binaries × 2 tunnels × 2 loads × (secs + 2) seconds.

    python3 bench/percon.py [--secs 6] [--rounds 3] glibc=target/release/rkite \
        musl=dist/rkite-x86_64-unknown-linux-musl
"""
import argparse, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

HOST = "127.0.0.1"
KITE = "percon.test"
SECRET = "s3cret"
CERTNAME = "fe.percon.test"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    def __init__(self, args):
        self.lines = []
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append(line.rstrip())

    def wait_for(self, needle, count=1, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            hits = [ln for ln in self.lines if needle in ln]
            if len(hits) >= count:
                return hits[count - 1]
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise SystemExit(f"waiting for {needle!r}:\n" + "\n".join(self.lines[-20:]))

    def cpu(self):
        """User + system seconds of the whole process (all threads), and its
        minor page faults (fresh memory touched: what an allocator that
        unmaps and maps again pays for)."""
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK, int(fields[7])

    def allocs(self):
        n = sum("stats:" in ln for ln in self.lines)
        self.p.send_signal(signal.SIGUSR2)
        m = re.search(r"allocs=(\d+)", self.wait_for("stats:", n + 1, timeout=5))
        return int(m.group(1)) if m else None

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)


def make_certs(d):
    run = lambda argv: subprocess.run(argv, cwd=d, check=True, capture_output=True)
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write(f"[ext]\nbasicConstraints = critical, CA:FALSE\nsubjectAltName = DNS:{CERTNAME}\n"
                "extendedKeyUsage = serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509", "-new"] + ec + ["-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=percon CA"])
    run(["openssl", "req", "-new"] + ec + ["-keyout", "leaf.key", "-out", "leaf.csr",
        "-subj", f"/CN={CERTNAME}"])
    run(["openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-set_serial", "1", "-days", "2", "-extfile", "leaf.ext", "-extensions", "ext",
         "-out", "leaf.pem"])
    with open(os.path.join(d, "combined.pem"), "wb") as out:
        for part in ("leaf.key", "leaf.pem", "ca.pem"):
            with open(os.path.join(d, part), "rb") as f:
                out.write(f.read())
    return os.path.join(d, "ca.pem"), os.path.join(d, "combined.pem")


def start_origin(d):
    www = os.path.join(d, "www")
    os.makedirs(www)
    with open(os.path.join(www, "page.html"), "w") as f:
        f.write("<!doctype html><p>" + "The quick brown fox jumps over the lazy dog. " * 20 + "</p>")
    port = free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""{'user root;' if os.geteuid() == 0 else ''}
worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_timeout 300s; keepalive_requests 10000000;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen {HOST}:{port} backlog=4096; root {www}; }} }}
""")
    p = subprocess.Popen(["nginx", "-p", d, "-e", f"{d}/nginx-error.log", "-c", conf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 10
    while time.time() < end:
        try:
            socket.create_connection((HOST, port), 1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("nginx did not start")


def start_pair(binary, origin_port, certs):
    port = free_port()
    fe = [binary, "--isfrontend", f"--host={HOST}", f"--ports={port}", "--protos=http",
          f"--domain=http:{KITE}:{SECRET}"]
    be = [binary, f"--frontend={HOST}:{port}",
          f"--service_on=http:{KITE}:{HOST}:{origin_port}:{SECRET}"]
    if certs:
        fe.append(f"--tls_endpoint={CERTNAME}:{certs[1]}")
        be += [f"--fe_certname={CERTNAME}", f"--ca_certs={certs[0]}"]
    fep = Proc(fe)
    fep.wait_for("listening on")
    bep = Proc(be)
    bep.wait_for("is live")
    return port, fep, bep


def wrk(port, secs, close):
    argv = ["wrk", "-t2", "-c32", f"-d{secs}s", "--timeout", "5s", "-H", f"Host: {KITE}"]
    if close:
        argv += ["-H", "Connection: close"]
    out = subprocess.run(argv + [f"http://{HOST}:{port}/page.html"], capture_output=True,
                         text=True, timeout=secs + 30, check=True).stdout
    m = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or bad:
        raise SystemExit(f"wrk failed:\n{out}")
    return int(m.group(1))


def measure(name, binary, tunnel, origin_port, certs, secs):
    port, fe, be = start_pair(binary, origin_port, certs if tunnel == "tls" else None)
    out = []
    try:
        wrk(port, 1, False)  # warm-up: the tunnel's buffers and tables reach their size
        for load, close in (("keep-alive", False), ("new-conn", True)):
            a0 = (fe.allocs(), be.allocs())
            c0 = [a + b for a, b in zip(fe.cpu(), be.cpu())]
            n = wrk(port, secs, close)
            c1 = [a + b for a, b in zip(fe.cpu(), be.cpu())]
            a1 = (fe.allocs(), be.allocs())
            per = {"us": (c1[0] - c0[0]) / n * 1e6, "faults": (c1[1] - c0[1]) / n, "rps": n / secs}
            if None not in a0 + a1:
                per["fe_allocs"] = (a1[0] - a0[0]) / n
                per["be_allocs"] = (a1[1] - a0[1]) / n
            out.append(((name, tunnel, load), per))
            extra = (f"  allocs/request fe {per['fe_allocs']:.1f} be {per['be_allocs']:.1f}"
                     if "fe_allocs" in per else "")
            print(f"  {name:10s} {tunnel:5s} {load:10s} {per['rps']:8.0f} req/s "
                  f"{per['us']:7.1f} µs tunnel CPU/request  {per['faults']:.2f} page faults/request"
                  f"{extra}", flush=True)
    finally:
        be.stop()
        fe.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--secs", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tunnels", default="plain,tls")
    ap.add_argument("binaries", nargs="+", help="NAME=PATH")
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.binaries]
    d = tempfile.mkdtemp(prefix="rkite-percon-")
    origin, origin_port = start_origin(d)
    certs = make_certs(d)
    results = {}
    try:
        for r in range(a.rounds):
            order = bins if r % 2 == 0 else bins[::-1]
            print(f"round {r + 1}/{a.rounds}", flush=True)
            for tunnel in a.tunnels.split(","):
                for name, path in order:
                    for key, per in measure(name, path, tunnel, origin_port, certs, a.secs):
                        results.setdefault(key, []).append(per)
    finally:
        origin.terminate()
        origin.wait(10)
        shutil.rmtree(d, ignore_errors=True)
    base = bins[0][0]
    print("\ntunnel CPU per request (frontend + backend, user + sys), µs: median and least of the "
          f"runs; against {base}: the median of each round's ratio (the two ran back to back, so "
          "a drift of the machine's load cancels), and the ratio of the least")
    for (name, tunnel, load), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        us = statistics.median(p["us"] for p in runs)
        least = min(p["us"] for p in runs)
        ref = results.get((base, tunnel, load))
        ratio = statistics.median(p["us"] / q["us"] for p, q in zip(runs, ref)) if ref else None
        ratio_least = least / min(p["us"] for p in ref) if ref else None
        allocs = f"  page faults/request {statistics.median(p['faults'] for p in runs):.2f}"
        allocs += (f"  allocs/request fe {statistics.median(p['fe_allocs'] for p in runs):.1f}"
                  f" be {statistics.median(p['be_allocs'] for p in runs):.1f}"
                  if "fe_allocs" in runs[0] else "")
        print(f"  {tunnel:5s} {load:10s} {name:10s} {us:7.1f} {least:7.1f}"
              + (f"  ×{ratio:.2f} {ratio_least:.2f} of {base}" if ratio else "")
              + f"  (runs {', '.join('%.1f' % p['us'] for p in runs)}){allocs}")


if __name__ == "__main__":
    sys.exit(main())
