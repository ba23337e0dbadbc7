#!/usr/bin/env python3
"""What issue 14's operator features cost, appended to bench/RESULTS.md:

1. TLS handshakes through a frontend terminating TLS with an ACME-issued certificate
   (one kept in --acme_dir from an earlier run, installed at start) against the same
   certificate given as --tls_endpoint: new connections (python's ssl, SNI, one HTTP/1.0
   request each) for a fixed time against each, alternating; connections per second and
   frontend CPU per connection.
2. The PROXY protocol: plain HTTP requests on new connections, with and without a v2
   header in front (--proxyproto_from=127.0.0.1): frontend CPU per connection.
3. The frontend's RSS with 1,000 kites registered (50 backends with 20 --service_on
   lines each in an option file) and 1,000 certificates loaded from --acme_dir.

Everything on 127.0.0.1; every loop is bounded in count and time. No ACME server is
contacted: the certificates are made with openssl and found in --acme_dir, and names
whose certificate is fresh order nothing.
Usage: bench/operators.py --rkite PATH [--seconds S] [--out bench/RESULTS.md]
"""

import argparse
import os
import platform
import shlex
import socket
import struct
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")
SECRET = "bench-ops-secret"


def say(msg):
    print(f"[operators] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_log(path, needle, timeout=30, count=1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path, errors="replace") as f:
            if f.read().count(needle) >= count:
                return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {needle!r} ({count}) in {path}")


def start(args, log, env=None):
    say("$ " + " ".join(shlex.quote(a) for a in args[:8]) + (" …" if len(args) > 8 else ""))
    out = open(log, "w")
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


def make_cert(work, name, out_dir):
    """A P-256 certificate for `name` valid 90 days from now; the key as PKCS#8 DER."""
    key = os.path.join(work, "k.pem")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                    "-out", key], check=True, capture_output=True)
    crt = os.path.join(out_dir, f"{name}.crt")
    subprocess.run(["openssl", "req", "-x509", "-key", key, "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}", "-days", "90", "-out", crt],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", key, "-outform", "DER",
                    "-out", os.path.join(out_dir, f"{name}.key")], check=True,
                   capture_output=True)
    return key, crt


def origin(port):
    """A tiny HTTP origin (python's http.server) on 127.0.0.1:port."""
    return subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tempfile.mkdtemp())


def tls_loop(port, seconds):
    """New TLS connections (SNI bench.test, one HTTP/1.0 request each) for `seconds`:
    python's ssl, no certificate check (the frontend's cost is what is measured)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    count, start = 0, time.time()
    while time.time() - start < seconds and count < 1_000_000:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="bench.test") as c:
                c.sendall(b"GET / HTTP/1.0\r\nHost: bench.test\r\n\r\n")
                while c.recv(65536):
                    pass
        count += 1
    return count, time.time() - start


def relay(rkite, work, tag, ports, tunnels, web, extra):
    """An rkite frontend on `ports` (with `extra` flags) and a backend flying
    bench.test through its port `tunnels`, live; returns (frontend, backend)."""
    fe = start([rkite, "--isfrontend", "--host=127.0.0.1",
                "--ports=" + ",".join(str(p) for p in ports),
                f"--domain=http:bench.test:{SECRET}"] + extra,
               os.path.join(work, f"fe-{tag}.log"), env=dict(os.environ, RUST_LOG="warn"))
    be_log = os.path.join(work, f"be-{tag}.log")
    be = start([rkite, f"--frontend=127.0.0.1:{tunnels}",
                f"--service_on=http:bench.test:127.0.0.1:{web}:{SECRET}"], be_log,
               env=dict(os.environ, RUST_LOG="info"))
    try:
        wait_log(be_log, "kite http:bench.test is live")
    except BaseException:
        stop(fe, be)
        raise
    return fe, be


def stop(*procs):
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def tls_handshakes(rkite, work, seconds, rounds):
    acme_dir = os.path.join(work, "acme")
    os.makedirs(acme_dir, mode=0o700, exist_ok=True)
    key, crt = make_cert(work, "bench.test", acme_dir)
    pem = os.path.join(work, "endpoint.pem")
    with open(pem, "w") as f:
        f.write(open(key).read() + open(crt).read())
    web = free_port()
    org = origin(web)
    results = {"acme": [], "tls_endpoint": []}
    try:
        for r in range(rounds):
            for kind in (("acme", "tls_endpoint") if r % 2 == 0 else ("tls_endpoint", "acme")):
                port = free_port()
                extra = ([f"--acme=https://127.0.0.1:9/dir", f"--acme_dir={acme_dir}"]
                         if kind == "acme" else [f"--tls_endpoint=bench.test:{pem}"])
                fe, be = relay(rkite, work, f"{kind}-{r}", [port], port, web, extra)
                fe_log = os.path.join(work, f"fe-{kind}-{r}.log")
                try:
                    before = cpu_seconds(fe.pid)
                    conns, real = tls_loop(port, seconds)
                    used = cpu_seconds(fe.pid) - before
                    results[kind].append((conns / real, used / max(conns, 1) * 1e6))
                    say(f"{kind}: {conns / real:.0f} conn/s, {used / max(conns, 1) * 1e6:.0f} µs "
                        f"frontend CPU per connection")
                    with open(fe_log) as f:
                        assert "ordering a certificate" not in f.read(), "no order expected"
                finally:
                    stop(be, fe)
    finally:
        org.terminate()
    return results


def proxy_header(src_port):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    body = socket.inet_aton("127.0.0.9") + socket.inet_aton("127.0.0.1") + struct.pack(
        "!HH", src_port, 80)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def proxy_protocol(rkite, work, count, rounds):
    web = free_port()
    org = origin(web)
    results = {"with header": [], "without": []}
    try:
        for r in range(rounds):
            for kind in (("with header", "without") if r % 2 == 0 else ("without", "with header")):
                # Visitors on `port` (behind the "balancer"), the backend on `tunnels`.
                port, tunnels = free_port(), free_port()
                extra = (["--proxyproto_from=127.0.0.1", f"--proxyproto_ports={port}"]
                         if kind == "with header" else [])
                fe, be = relay(rkite, work, f"pp-{r}-{kind[:4]}", [port, tunnels], tunnels, web,
                               extra)
                try:
                    before = cpu_seconds(fe.pid)
                    deadline = time.time() + 120
                    for i in range(count):
                        if time.time() > deadline:
                            raise SystemExit("the PROXY protocol loop ran out of time")
                        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                            head = proxy_header(40000 + i % 20000) if extra else b""
                            c.sendall(head + b"GET / HTTP/1.0\r\nHost: bench.test\r\n\r\n")
                            while c.recv(65536):
                                pass
                    used = cpu_seconds(fe.pid) - before
                    results[kind].append(used / count * 1e6)
                    say(f"PROXY protocol {kind}: {used / count * 1e6:.0f} µs frontend CPU per "
                        f"connection")
                finally:
                    stop(be, fe)
    finally:
        org.terminate()
    return results


def many(rkite, work, n):
    acme_dir = os.path.join(work, "many-acme")
    os.makedirs(acme_dir, mode=0o700, exist_ok=True)
    t0 = time.time()
    for i in range(n):
        make_cert(work, f"k{i}.bench.test", acme_dir)
    say(f"{n} certificates made in {time.time() - t0:.0f} s")
    web = free_port()
    port = free_port()
    fe_log = os.path.join(work, "fe-many.log")
    fe = start([rkite, "--isfrontend", "--host=127.0.0.1", f"--ports={port}",
                f"--domain=http:*.bench.test:{SECRET}", "--acme=https://127.0.0.1:9/dir",
                f"--acme_dir={acme_dir}"], fe_log, env=dict(os.environ, RUST_LOG="info"))
    # Many users: one backend per 20 kites (a tunnel request stays well under the
    # frontend's 16 KiB head limit, as real backends' do).
    per = 20
    rcs = []
    for b in range(0, n, per):
        rc = os.path.join(work, f"many-{b}.rc")
        with open(rc, "w") as f:
            f.write(f"frontend = 127.0.0.1:{port}\n")
            for i in range(b, min(b + per, n)):
                f.write(f"service_on = http:k{i}.bench.test:127.0.0.1:{web}:{SECRET}\n")
        rcs.append(rc)
    backends = []
    try:
        wait_log(fe_log, "listening on", 30)
        idle = rss_kib(fe.pid)
        for j, rc in enumerate(rcs):
            backends.append(start([rkite, f"--optfile={rc}"], os.path.join(work, f"be-many-{j}.log"),
                                  env=dict(os.environ, RUST_LOG="warn")))
        wait_log(fe_log, "is live", 180, count=n)
        loaded = rss_kib(fe.pid)
        with open(fe_log) as f:
            text = f.read()
        stored = text.count("serving the stored certificate")
        assert "ordering a certificate" not in text, "no order expected"
        say(f"frontend RSS {idle} KiB with {stored} certificates, {loaded} KiB with {n} kites "
            f"from {len(rcs)} backends")
        return idle, loaded, stored, len(rcs)
    finally:
        for be in backends:
            be.terminate()
        for be in backends:
            be.wait(timeout=10)
        fe.terminate()
        fe.wait(timeout=10)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rkite", required=True)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--kites", type=int, default=1000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rkite = os.path.abspath(a.rkite)
    work = tempfile.mkdtemp(prefix="rkite-ops-")
    load = os.getloadavg()
    tls = tls_handshakes(rkite, work, a.seconds, a.rounds)
    pp = proxy_protocol(rkite, work, a.connections, a.rounds)
    idle, loaded, stored, nbe = many(rkite, work, a.kites)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cmd = " ".join(shlex.quote(x) for x in sys.argv)
    lines = [
        "",
        "<!-- bench/operators.py -->",
        "",
        "## Operators' features (issue 14): TLS with ACME certificates, PROXY protocol, "
        "many kites",
        "",
        f"Measured by `{cmd}` on {when}, {os.cpu_count()} cores, {platform.platform()}; "
        f"load average before: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. Medians of "
        f"{a.rounds} alternating runs each.",
        "",
        "| TLS terminated at the frontend | new connections/s (one request each) | "
        "frontend CPU µs per connection |",
        "|---|---:|---:|",
    ]
    for kind, label in (("acme", "certificate issued by ACME, kept in `--acme_dir`"),
                        ("tls_endpoint", "the same certificate as `--tls_endpoint`")):
        rs = tls[kind]
        lines.append(f"| {label} | {median([r[0] for r in rs]):.0f} | "
                     f"{median([r[1] for r in rs]):.0f} |")
    lines += [
        "",
        f"| HTTP/1.0 request on a new connection ({a.connections} per run) | frontend CPU µs "
        "per connection |",
        "|---|---:|",
        f"| with a PROXY protocol v2 header (`--proxyproto_from=127.0.0.1`) | "
        f"{median(pp['with header']):.0f} |",
        f"| without | {median(pp['without']):.0f} |",
        "",
        f"Frontend RSS: {idle} KiB after loading {stored} certificates from `--acme_dir` "
        f"(no kite yet), {loaded} KiB with {a.kites} kites registered by {nbe} backends "
        f"(20 kites each).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
