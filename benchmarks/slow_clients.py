"""A normal client's /healthz and /metrics while 256 slow clients trickle their request heads, this tree beside a
baseline commit, in one run.

Run on demand:  .venv/bin/python -m benchmarks.slow_clients [--baseline abbedd0] [--slow 256] [--requests 100]
Each build serves the same ~10,000-series body from its own `MetricsServer` in its own process (the baseline from a
git worktree, see benchmarks/run.py). The measuring client and the slow clients live in that process too, on
127.0.0.1 and 127.0.2.x (the slow clients come from 16 addresses, so a per-address cap does not hide them). Every
loop is bounded: a request waits at most 3 s, a phase stops after 10 timeouts.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

BODY = b"".join(b'bedrock_batch_demo{model_id="m%d",region="us-east-1"} %d\n' % (i, i) for i in range(10_000))


class _Body:
    def parts(self, gzip: bool = False) -> tuple[bytes, ...]:
        return (BODY,)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else math.inf


def _requests(address: tuple[str, int], count: int) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"/healthz": [], "/metrics": []}
    timeouts = 0
    for index in range(count):
        if timeouts >= 10:
            break
        path = "/healthz" if index % 2 else "/metrics"
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(*address, timeout=3)
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            conn.close()
        except OSError:
            timeouts += 1
            continue
        latencies[path].append(time.perf_counter() - started)
    out: dict[str, Any] = {"timeouts": timeouts}
    for path, values in latencies.items():
        out[path] = {"n": len(values), "p50_ms": _pct(values, 0.5) * 1000, "p99_ms": _pct(values, 0.99) * 1000}
    return out


def _child(slow: int, count: int) -> dict[str, Any]:
    import resource

    from exporter.http import MetricsServer, Router
    from exporter.snapshot import Store

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * slow + 256)), hard))
    server = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), _Body()))
    server.start()
    address = server.server_address
    result: dict[str, Any] = {"threads_before": threading.active_count()}
    _requests(address, 10)  # warm-up
    result["alone"] = _requests(address, count)
    socks = []
    for index in range(slow):
        try:
            sock = socket.create_connection(address, timeout=3, source_address=(f"127.0.2.{index % 16 + 1}", 0))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        except OSError:
            break
    stop = threading.Event()

    def trickle() -> None:  # a byte to each slow client every second: no per-read timeout ever trips
        for _ in range(600):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")
            if stop.wait(1.0):
                return

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    time.sleep(1.5)
    result["slow_connected"] = len(socks)
    result["with_slow"] = _requests(address, count)
    result["threads_with_slow"] = threading.active_count() - 1  # without the trickler
    result["open_at_end"] = server.open_connections  # the slow clients were still connected throughout
    stop.set()
    trickler.join(5)
    for sock in socks:
        sock.close()
    server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", default="abbedd0", help="commit to measure beside this tree")
    parser.add_argument("--slow", type=int, default=256)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    # not in the child, which imports only its own build's exporter
    from benchmarks.run import baseline_python, measure

    builds = {"this tree": sys.executable, args.baseline: baseline_python(args.baseline)}
    here = Path(__file__).resolve()
    child = ("--child", str(args.slow), str(args.requests))
    rows = {name: measure(python, *child, script=here) for name, python in builds.items()}
    print(
        f"{args.slow} slow clients, {args.requests} requests a phase, /metrics (~10,000 series) and /healthz by turns"
    )
    print("| build | phase | /healthz p50 / p99 ms | /metrics p50 / p99 ms | timeouts (3 s) | threads |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        for phase, threads in (("alone", row["threads_before"]), ("with_slow", row["threads_with_slow"])):
            data = row[phase]
            h, m = data["/healthz"], data["/metrics"]
            print(
                f"| {name} | {phase} ({row['open_at_end'] if phase == 'with_slow' else 0} open) "
                f"| {h['p50_ms']:.2f} / {h['p99_ms']:.2f} | {m['p50_ms']:.2f} / {m['p99_ms']:.2f} "
                f"| {data['timeouts']} | {threads} |"
            )
        ratio = row["with_slow"]["/metrics"]["p99_ms"] / row["alone"]["/metrics"]["p99_ms"]
        print(f"| {name} | /metrics p99 with slow / alone | {ratio:.2f}x | | | |")


if __name__ == "__main__":
    main()
