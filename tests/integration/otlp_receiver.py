"""A real OTLP/HTTP metrics receiver on 127.0.0.1 for tests: decodes ExportMetricsServiceRequest, records points.

Also what every OTLP transport's test shares: flattening a request into points, finding a point, and comparing the
points of one push with the /metrics exposition of the same Snapshot, series by series.
"""

from __future__ import annotations

import contextlib
import gzip
import math
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
from prometheus_client.parser import text_string_to_metric_families

from exporter.sinks.otlp import OtelName, attribute_name, otel_name


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


# Values that move between two reads of the same snapshot (they are computed from the clock at read time).
CLOCK_DEPENDENT = {
    "bedrock_batch_exporter_data_age_seconds",
    "bedrock_batch_exporter_newest_datapoint_age_seconds",
    "bedrock_batch_exporter_otlp_exports",  # the background push loop may count one more push between the reads
}


def find(points: list[Point], name: str, **attributes: str) -> Point | None:
    for point in points:
        if point.name == name and all(point.attributes.get(k) == v for k, v in attributes.items()):
            return point
    return None


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def compare_with_exposition(body: str, points: list[Point], names: dict[str, OtelName]) -> int:
    """Assert every series of /metrics (but runtime and clock-dependent ones) arrived with the same value, name, kind
    and attributes; returns how many were compared."""
    compared = 0
    for family in text_string_to_metric_families(body):
        if not family.name.startswith(("aws_", "bedrock_batch_")) or family.name in CLOCK_DEPENDENT:
            continue
        mapped = otel_name(family.name, names)
        if family.type == "histogram":
            for sample in (s for s in family.samples if s.name.endswith("_count")):
                attrs = {attribute_name(k): v for k, v in sample.labels.items()}
                got = find(points, mapped.name, **attrs)
                assert got is not None and got.kind == "histogram" and got.unit == "s", sample
                assert got.count == sample.value and sum(got.bucket_counts) == got.count
                compared += 1
            continue
        for sample in family.samples:
            attrs = {attribute_name(k): v for k, v in sample.labels.items()}
            got = find(points, mapped.name, **attrs)
            assert got is not None, (family.name, sample.labels)
            assert set(got.attributes) == set(attrs), (got.attributes, attrs)
            assert same(got.value, sample.value), (family.name, sample.labels, got.value, sample.value)
            assert got.kind == ("sum" if family.type == "counter" else "gauge")
            compared += 1
    return compared
