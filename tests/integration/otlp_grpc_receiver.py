"""A real OTLP/gRPC metrics receiver on 127.0.0.1 for tests: opentelemetry-proto's MetricsService served by grpcio.

It records what it receives as the OTLP/HTTP receiver does (`Received` with the flattened `Point`s), so the tests of
both transports read the same shapes.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import (
    MetricsServiceServicer,
    add_MetricsServiceServicer_to_server,
)

from tests.integration.otlp_receiver import Point, Received, flatten


class _Servicer(MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OtlpGrpcReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: ExportMetricsServiceRequest, context: Any) -> ExportMetricsServiceResponse:
        receiver = self._receiver
        if receiver.delay:
            # A slow receiver: the exporter's deadline must cut this short; stop() ends the wait at once.
            receiver.stopping.wait(receiver.delay)
        headers = {key.lower(): value for key, value in context.invocation_metadata()}
        with receiver.lock:
            receiver.received.append(Received(time.time(), headers, flatten(request)))
            receiver.arrived.set()
        return ExportMetricsServiceResponse()


class OtlpGrpcReceiver:
    """Serves opentelemetry.proto.collector.metrics.v1.MetricsService/Export on 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, port: int = 0) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.arrived = threading.Event()
        self.stopping = threading.Event()
        self.delay = 0.0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        add_MetricsServiceServicer_to_server(_Servicer(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        if self.port == 0:
            raise OSError(f"grpc could not bind 127.0.0.1:{port}")

    @property
    def url(self) -> str:
        """The endpoint as the exporter's config takes it (http:// means a plaintext channel)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpGrpcReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        """Go away like a crashed receiver: in-flight calls are cancelled, new connections refused."""
        self.stopping.set()
        self._server.stop(grace=None).wait(5)

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def latest(self) -> list[Point]:
        """The points of the newest request (empty before the first)."""
        with self.lock:
            return list(self.received[-1].points) if self.received else []
