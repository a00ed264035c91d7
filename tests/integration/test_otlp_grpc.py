"""The OTLP sink over gRPC (otlp.protocol: grpc) against a real gRPC OTLP receiver on 127.0.0.1: the values equal
/metrics series by series, headers travel as gRPC metadata, and a receiver that is down, slow and back is survived and
counted as over OTLP/HTTP (tests/integration/test_otlp.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from exporter import __version__
from exporter.app import Exporter
from exporter.demo.server import SimulatedAws
from exporter.sinks.otlp import FIXED_NAMES, cloudwatch_names
from tests.conftest import put_values, start_exporter, start_job
from tests.integration.otlp_grpc_receiver import OtlpGrpcReceiver
from tests.integration.otlp_receiver import compare_with_exposition, find
from tests.integration.test_otlp import OTEL_SERIES, PENDING, both_sinks, config_text


@pytest.fixture
def grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    server = OtlpGrpcReceiver().start()
    yield server
    server.stop()


def test_otlp_grpc_carries_what_metrics_shows(
    fresh_aws: SimulatedAws,
    grpc_receiver: OtlpGrpcReceiver,
    exporters: list[Exporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    put_values(fresh_aws, {(PENDING, "model-a"): 42.0, (PENDING, "model-b"): 7.0})
    start_job(fresh_aws, "model-a")
    otlp = f"""  protocol: grpc
  endpoint: {grpc_receiver.url}
  interval: 1s
  timeout: 2s
  headers: {{authorization: "Bearer ${{OTLP_TOKEN}}"}}
  resource_attributes: {{deployment.environment: test}}"""
    exporter, url = start_exporter(exporters, config_text(fresh_aws, otlp), env={"OTLP_TOKEN": "s3cret-token"})

    body, points = both_sinks(exporter, url, grpc_receiver)

    point = find(points, OTEL_SERIES, **{"aws.bedrock.model_id": "model-a"})
    assert point is not None and point.kind == "gauge" and point.unit == "{record}" and point.value == 42.0
    assert point.scope == "bedrock-batch-exporter"
    resource = point.resource
    assert resource["service.name"] == "bedrock-batch-exporter" and resource["service.version"] == __version__
    assert resource["cloud.provider"] == "aws" and resource["deployment.environment"] == "test"
    requests = find(points, "bedrock_batch_exporter.aws.api.requests", **{"rpc.method": "GetMetricData"})
    assert requests is not None and requests.kind == "sum" and requests.monotonic and requests.temporality == 2

    names = {**FIXED_NAMES, **cloudwatch_names(exporter.config.namespaces)}
    compared = compare_with_exposition(body, points, names)
    assert compared >= 30
    print(f"{compared} series equal over OTLP/gRPC and on /metrics")

    # The header travels as gRPC metadata, and is never logged.
    assert grpc_receiver.requests()[-1].headers["authorization"] == "Bearer s3cret-token"
    assert "s3cret-token" not in caplog.text


def test_grpc_header_names_in_any_case_reach_the_receiver(
    fresh_aws: SimulatedAws, grpc_receiver: OtlpGrpcReceiver, exporters: list[Exporter]
) -> None:
    otlp = f"  protocol: grpc\n  endpoint: {grpc_receiver.url}\n  timeout: 2s\n  headers: {{X-Tenant: acme}}"
    exporter, _ = start_exporter(exporters, config_text(fresh_aws, otlp))
    assert exporter.otlp is not None and exporter.otlp.export()
    assert grpc_receiver.requests()[-1].headers["x-tenant"] == "acme"
