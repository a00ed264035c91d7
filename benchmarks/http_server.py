"""/metrics latency on the cheroot server beside the old http.server adapter, in one run, at ~20,000 series.

Run on demand:  .venv/bin/python -m benchmarks.http_server [--scrapes N]
Both servers serve the same Router and the same pre-rendered bodies (the Prometheus sink renders once per Snapshot),
so the figures compare the servers alone. 127.0.0.1 only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import math
import socket
import ssl
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks.run import scrape_latencies
from exporter import __version__
from exporter.http import SECURITY_HEADERS, MetricsServer, Router
from exporter.snapshot import Store

SERIES = 20_000


class _LegacyHandler(BaseHTTPRequestHandler):
    """The http.server adapter the exporter used before cheroot, kept here for the comparison only."""

    server: LegacyMetricsServer
    protocol_version = "HTTP/1.1"
    timeout = 30
    server_version = f"bedrock-batch-exporter/{__version__}"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        answer = self.server.router.handle(self.command, self.path, self.headers, self.rfile.read)
        if answer.status in (400, 413):
            self.close_connection = True
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_HEAD = do_POST = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass


class LegacyMetricsServer(ThreadingHTTPServer):
    """One daemon thread per connection, listen backlog 64: the old front door."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], router: Router, *, tls: ssl.SSLContext | None = None) -> None:
        self.router = router
        super().__init__(address, _LegacyHandler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="legacy-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class FixedExposition:
    """~SERIES YACE-style series, rendered once, as the Prometheus sink serves them."""

    def __init__(self, series: int) -> None:
        lines = []
        for i in range(series):
            lines.append(
                "aws_bedrock_batch_number_of_records_pending_processing_maximum"
                f'{{account_id="111122223333",region="us-east-1",dimension_ModelId="model-{i:05d}"}} {i}.0\n'
            )
        self.plain = "".join(lines).encode()
        self.gzipped = gzip.compress(self.plain, compresslevel=6)

    def parts(self, gzip: bool = False) -> tuple[bytes, ...]:
        return (self.gzipped,) if gzip else (self.plain,)


def latencies(url: str, scrapes: int, gzip: bool) -> list[float]:
    """Back-to-back scrapes on one keep-alive connection (no pacing gap)."""
    return scrape_latencies(url, scrapes, gzip, gap=0.0)


def burst(url: str, clients: int) -> list[float]:
    """`clients` scrapes at once, each on a new connection; the time each took."""
    host, port = url.removeprefix("http://").split(":")

    def one(_: int) -> float:
        started = time.perf_counter()
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/metrics")
        assert conn.getresponse().read()
        conn.close()
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(one, range(clients), timeout=120))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def measure(server: Any, scrapes: int, clients: int) -> dict[str, list[float]]:
    server.start()
    try:
        latencies(server.url, 10, False)  # warm-up
        return {
            "plain": latencies(server.url, scrapes, False),
            "gzip": latencies(server.url, scrapes, True),
            f"{clients} at once": burst(server.url, clients),
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--clients", type=int, default=200)
    args = parser.parse_args()
    exposition = FixedExposition(SERIES)
    router = Router(Store(clock=time.time), exposition)
    print(
        f"/metrics at {SERIES:,} series: {len(exposition.plain) / 1e6:.1f} MB plain, "
        f"{len(exposition.gzipped) / 1e3:.0f} kB gzip; {args.scrapes} sequential keep-alive scrapes each"
    )
    old = measure(LegacyMetricsServer(("127.0.0.1", 0), router), args.scrapes, args.clients)
    new = measure(MetricsServer(("127.0.0.1", 0), router), args.scrapes, args.clients)
    heads = ("old p50", "old p99", "new p50", "new p99")
    print(f"{'case':<16}" + "".join(f"{h:>10}" for h in heads) + f"{'p50 new/old':>13}{'p99 new/old':>13}")
    for case in old:
        o50, o99, n50, n99 = (pct(v, q) * 1000 for v in (old[case], new[case]) for q in (0.5, 0.99))
        print(f"{case:<16}{o50:>8.2f}ms{o99:>8.2f}ms{n50:>8.2f}ms{n99:>8.2f}ms{n50 / o50:>12.2f}x{n99 / o99:>12.2f}x")
    print(
        f"(mean of the plain scrapes: old {statistics.mean(old['plain']) * 1000:.2f} ms, "
        f"new {statistics.mean(new['plain']) * 1000:.2f} ms)"
    )


if __name__ == "__main__":
    main()
