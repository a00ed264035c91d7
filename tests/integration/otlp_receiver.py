"""A real OTLP/HTTP metrics receiver on 127.0.0.1 for tests: decodes ExportMetricsServiceRequest, records points."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class Point:
    """One received data point, flattened with its metric and resource."""

    resource: dict[str, Any]
    scope: str
    name: str
    unit: str
    kind: str  # gauge, sum or histogram
    attributes: dict[str, Any]
    value: float  # the value of a gauge or sum; the sum of a histogram
    time_ns: int
    start_ns: int
    monotonic: bool = False
    temporality: int = 0
    count: int = 0
    bucket_counts: tuple[int, ...] = ()
    bounds: tuple[float, ...] = ()


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value") or "string_value")


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def flatten(request: ExportMetricsServiceRequest) -> list[Point]:
    points = []
    for rm in request.resource_metrics:
        resource = _attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                common = {"resource": resource, "scope": sm.scope.name, "name": metric.name, "unit": metric.unit}
                if kind == "gauge" or kind == "sum":
                    data = getattr(metric, kind)
                    for dp in data.data_points:
                        points.append(
                            Point(
                                **common,
                                kind=kind,
                                attributes=_attributes(dp.attributes),
                                value=dp.as_double if dp.HasField("as_double") else float(dp.as_int),
                                time_ns=dp.time_unix_nano,
                                start_ns=dp.start_time_unix_nano,
                                monotonic=kind == "sum" and metric.sum.is_monotonic,
                                temporality=metric.sum.aggregation_temporality if kind == "sum" else 0,
                            )
                        )
                elif kind == "histogram":
                    for hp in metric.histogram.data_points:
                        points.append(
                            Point(
                                **common,
                                kind=kind,
                                attributes=_attributes(hp.attributes),
                                value=hp.sum,
                                time_ns=hp.time_unix_nano,
                                start_ns=hp.start_time_unix_nano,
                                temporality=metric.histogram.aggregation_temporality,
                                count=hp.count,
                                bucket_counts=tuple(hp.bucket_counts),
                                bounds=tuple(hp.explicit_bounds),
                            )
                        )
    return points


@dataclass
class Received:
    """One accepted request."""

    at: float
    headers: dict[str, str]
    points: list[Point]


class _Handler(BaseHTTPRequestHandler):
    server: OtlpReceiver
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        srv = self.server
        if srv.delay:
            time.sleep(srv.delay)  # a slow receiver: the exporter's timeout must cut this short
        if self.path != "/v1/metrics" or self.headers.get("Content-Type") != "application/x-protobuf":
            self._reply(404 if self.path != "/v1/metrics" else 415, b"")
            return
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        with srv.lock:
            srv.received.append(
                Received(time.time(), {k.lower(): v for k, v in self.headers.items()}, flatten(request))
            )
            srv.arrived.set()
        self._reply(200, ExportMetricsServiceResponse().SerializeToString())

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class OtlpReceiver(ThreadingHTTPServer):
    """Serves POST /v1/metrics on 127.0.0.1 (port 0 = any free port); `received` holds every accepted request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.arrived = threading.Event()
        self.delay = 0.0
        self._connections: set[socket.socket] = set()
        self._thread = threading.Thread(target=self.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        with self.lock:
            self._connections.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def stop(self) -> None:
        """Stop like a receiver that goes away: no new connections, and the kept-alive ones are cut."""
        self.shutdown()
        self.server_close()
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def latest(self) -> list[Point]:
        """The points of the newest request (empty before the first)."""
        with self.lock:
            return list(self.received[-1].points) if self.received else []
