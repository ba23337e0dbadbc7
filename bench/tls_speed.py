#!/usr/bin/env python3
"""Frontend CPU per new TLS connection, for comparing builds of rkite (issue 15: which
per-package opt-levels are worth their bytes). For each binary given, alternating, a
frontend terminating TLS (ECDSA P-256 certificate, as --tls_endpoint and from --acme_dir) and a backend
flying the kite; python's ssl opens new connections (one HTTP/1.0 request each) for
--seconds; prints connections/s and frontend CPU µs per connection, then the medians.
Loopback only; reuses bench/operators.py's helpers.

Usage: bench/tls_speed.py [--seconds S] [--rounds N] LABEL=PATH [LABEL=PATH ...]
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import operators as ops  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("builds", nargs="+")
    a = ap.parse_args()
    builds = [b.split("=", 1) for b in a.builds]
    res = {label: [] for label, _ in builds}
    with tempfile.TemporaryDirectory() as work:
        for r in range(a.rounds):
            order = builds if r % 2 == 0 else builds[::-1]
            for label, path in order:
                wd = os.path.join(work, f"{label}-{r}")
                os.makedirs(wd)
                out = ops.tls_handshakes(path, wd, a.seconds, 1)
                res[label].extend(out["tls_endpoint"] + out["acme"])
    for label, rows in res.items():
        cps = statistics.median(c for c, _ in rows)
        us = statistics.median(u for _, u in rows)
        print(f"{label}: {cps:.0f} conn/s, {us:.0f} µs frontend CPU per connection "
              f"(runs: {', '.join(f'{u:.0f}' for _, u in rows)})")


if __name__ == "__main__":
    main()
