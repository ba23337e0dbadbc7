#!/usr/bin/env python3
"""Builds raw seed corpora for the fuzz targets from real inputs: the byte
strings of the unit tests and the wire captures in tests/data/transcripts
(pagekite.py <-> pagekite.py through a logging proxy). Writes
fuzz/corpus-raw/<target>/; `make fuzz-seed` then minimises them into
fuzz/corpus/<target>/ with `cargo fuzz cmin`. Reads files only."""

import ast
import hashlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus-raw")
SEEDS = {t: set() for t in ["frame", "handshake", "sniff", "config", "acl_regex"]}
METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"OPTIONS ", b"CONNECT ", b"PING ",
           b"DELETE ", b"PATCH ")


def add(target, data):
    if isinstance(data, str):
        data = data.encode()
    if data and len(data) <= 65536:
        SEEDS[target].add(bytes(data))


def rust_literals(path):
    """The b"..." and "..." literals of a Rust file, unescaped (roughly:
    \\r \\n \\t \\\\ \\" \\xNN and line continuations)."""
    text = open(path, encoding="utf-8").read()
    out = []
    for m in re.finditer(r'(b?)r#"(.*?)"#|(b?)r"(.*?)"|(b?)"((?:[^"\\]|\\.)*)"', text, re.S):
        if m.group(2) is not None or m.group(4) is not None:
            raw = m.group(2) if m.group(2) is not None else m.group(4)
            out.append(raw.encode())
            continue
        body = m.group(6)
        body = re.sub(r"\\\n\s*", "", body)
        res = bytearray()
        i = 0
        while i < len(body):
            c = body[i]
            if c == "\\" and i + 1 < len(body):
                n = body[i + 1]
                simple = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\", '"': b'"',
                          "'": b"'", "0": b"\0"}
                if n in simple:
                    res += simple[n]
                    i += 2
                    continue
                if n == "x" and i + 3 < len(body) + 1:
                    try:
                        res.append(int(body[i + 2:i + 4], 16))
                        i += 4
                        continue
                    except ValueError:
                        pass
            res += c.encode()
            i += 1
        out.append(bytes(res))
    return out


def transcripts():
    """(direction, bytes) of every connection in the raw captures."""
    base = os.path.join(ROOT, "tests", "data", "transcripts")
    for name in sorted(os.listdir(base)):
        if not name.endswith(".raw.log"):
            continue
        streams = {}
        for line in open(os.path.join(base, name), encoding="utf-8", errors="replace"):
            m = re.match(r"\s*[\d.]+ #(\d+) (\S+) RAW\[\d+\] (b.*)$", line.rstrip("\n"))
            if not m:
                continue
            try:
                data = ast.literal_eval(m.group(3))
            except (ValueError, SyntaxError):
                continue
            key = (name, m.group(1), m.group(2))
            streams[key] = streams.get(key, b"") + data
        for (_, _, direction), data in streams.items():
            yield direction, data


def frames(stream):
    """Splits a chunk stream into its frames (stops at the first bad one)."""
    out = []
    while stream:
        eol = stream.find(b"\n")
        if eol < 0 or eol > 24:
            break
        line = stream[:eol].rstrip(b"\r").rstrip(b"R")
        try:
            n = int(line, 16)
        except ValueError:
            break
        end = eol + 1 + n
        if n == 0 or end > len(stream):
            break
        out.append(stream[:end])
        stream = stream[end:]
    return out


def main():
    for direction, data in transcripts():
        if data[:1] in (b"\x16", b"\x80"):
            add("sniff", data[:4096])
            continue
        head_end = data.find(b"\r\n\r\n")
        if data.startswith((b"CONNECT", b"HTTP/", b"HEAD", b"GET")) and head_end >= 0:
            head = data[:head_end + 4]
            add("handshake", head)
            add("sniff", head)
            data = data[head_end + 4:]
        chunks = frames(data)
        for f in chunks:
            add("frame", f)
            payload = f[f.find(b"\n") + 1:]
            split = payload.find(b"\r\n\r\n")
            headers, body = payload[:split + 4], payload[split + 4:]
            if b"X-PageKite" in headers or b"X-Beanstalk" in headers:
                add("handshake", headers)
            if body.startswith(METHODS) or body[:1] == b"\x16":
                add("sniff", body[:8192])
        if len(chunks) > 1:
            add("frame", b"".join(chunks[:8]))

    for lit in rust_literals(os.path.join(ROOT, "src/proto/frame.rs")):
        if re.match(rb"^[0-9a-fA-F]+R?\r?\n", lit):
            add("frame", lit)
    for lit in rust_literals(os.path.join(ROOT, "src/proto/handshake.rs")):
        if b"X-PageKite" in lit or b"X-Beanstalk" in lit or lit.startswith(b"CONNECT"):
            add("handshake", lit)
    for path in ["src/proto/sniff_tests.rs", "src/proto/http_tests.rs"]:
        for lit in rust_literals(os.path.join(ROOT, path)):
            if lit.startswith(METHODS) or lit[:1] in (b"\x16", b"\x80"):
                add("sniff", lit)
            elif re.fullmatch(rb"[0-9a-f\s]{200,}", lit):
                add("sniff", bytes.fromhex(lit.decode().replace(" ", "").replace("\n", "")))
    for path in ["src/config/files_tests.rs", "src/config/mod.rs"]:
        for lit in rust_literals(os.path.join(ROOT, path)):
            if b"=" in lit and not lit.startswith(b"--") and b"{" not in lit:
                add("config", lit)
        # Command lines in the tests, as option-file lines.
        for lit in rust_literals(os.path.join(ROOT, path)):
            if lit.startswith(b"--") and b"optfile" not in lit and b"optdir" not in lit:
                add("config", lit[2:])
    acl = rust_literals(os.path.join(ROOT, "src/proto/acl_tests.rs"))
    patterns = [lit for lit in acl if b"\\" in lit or b"|" in lit or b"[" in lit]
    addrs = [lit for lit in acl if re.fullmatch(rb"[0-9a-f.:]+", lit)]
    for i, p in enumerate(patterns):
        a = addrs[i % len(addrs)] if addrs else b"10.0.0.1"
        add("acl_regex", p + b"\n" + a + b"\n" + patterns[(i + 1) % len(patterns)])

    for target, seeds in SEEDS.items():
        d = os.path.join(OUT, target)
        os.makedirs(d, exist_ok=True)
        for s in seeds:
            with open(os.path.join(d, hashlib.sha1(s).hexdigest()), "wb") as f:
                f.write(s)
        print(f"{target}: {len(seeds)} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
