"""A CloudWatch that answers GetMetricData at almost no CPU cost, for the scrape-latency measurement.

In production AWS is remote: its work costs the exporter's machine nothing. The moto server that plays AWS in the other
measurements spends most of a core answering 40 GetMetricData calls of 500 queries a second, on the same 2 cores as
the exporter and the scraper, and the scrape tail then measures moto's CPU as much as the exporter's
(docs/performance.md). This server answers every query the way moto does when no datapoint matches (the shape is
botocore's GetMetricDataOutput: `MetricDataResults[]` with `Id`, `Label`, `Timestamps`, `Values`, `StatusCode`),
after an optional delay, over keep-alive HTTP/1.1 like AWS. Only GetMetricData (JSON protocol) is served; anything
else gets a 400 with an AWS-shaped error, so a configuration that needs more of AWS fails loudly.

With `--moving`, every result carries one datapoint instead (`Timestamps`: one epoch-second number, the last whole
minute, as the JSON protocol writes timestamps; `Values`: the number of GetMetricData calls answered so far), so every
value moves from one cycle to the next and the exporter renders every cycle, as in production when CloudWatch has new
datapoints.

Child: `python -m benchmarks.canned_aws [--moving]` prints its URL, then answers one line per command on stdin like
benchmarks/aws_process.py: `delay SECONDS`, `count OPERATION`, `reset`; it exits when stdin closes.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from benchmarks.aws_process import answer_commands

MAX_BODY = 4 << 20  # a 500-query GetMetricData request is ~70 KB


class _State:
    def __init__(self, moving: bool = False) -> None:
        self.moving = moving
        self.calls = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def count(self, operation: str) -> int:
        with self.lock:
            return self.counts.get(operation, 0)

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()


def _answer(request: Any, value: float | None = None) -> bytes:
    """Every query answered Complete: with no datapoint, or (`value`) one datapoint at the last whole minute."""
    queries = request.get("MetricDataQueries") if isinstance(request, dict) else None
    stamps = [] if value is None else [int(time.time()) // 60 * 60 - 60]
    values = [] if value is None else [value]
    results = [
        {
            "Id": q.get("Id"),
            "Label": q.get("Label") or _label(q),
            "Timestamps": stamps,
            "Values": values,
            "StatusCode": "Complete",
        }
        for q in queries or ()
        if isinstance(q, dict)
    ]
    return orjson.dumps({"MetricDataResults": results, "Messages": []})


def _label(query: dict[str, Any]) -> str:
    stat = query.get("MetricStat") or {}
    metric = stat.get("Metric") or {}
    return f"{metric.get('MetricName', '')} {stat.get('Stat', '')}".strip()


def make_server(state: _State) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, MAX_BODY))
            operation = str(self.headers.get("X-Amz-Target", "")).rsplit(".", 1)[-1]
            with state.lock:
                state.counts[operation] = state.counts.get(operation, 0) + 1
                if operation == "GetMetricData":
                    state.calls += 1
                calls = state.calls
            if operation != "GetMetricData":
                self._send(400, orjson.dumps({"__type": "InvalidAction", "message": f"not served: {operation}"}))
                return
            try:
                request = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._send(400, orjson.dumps({"__type": "SerializationException", "message": "bad JSON"}))
                return
            if state.delay:
                time.sleep(state.delay)
            self._send(200, _answer(request, float(calls) if state.moving else None))

        def _send(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", "canned")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def _serve() -> None:
    state = _State(moving="--moving" in sys.argv[1:])
    server = make_server(state)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answer_commands(f"http://127.0.0.1:{server.server_address[1]}", state)
    server.shutdown()


if __name__ == "__main__":
    _serve()
