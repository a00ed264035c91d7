"""The OTLP sink against a real OTLP/HTTP receiver on 127.0.0.1: names, units, attributes, resource, values equal to
/metrics series by series, receiver outages, environment variables, OTLP-only mode and the demo."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.app import Exporter
from exporter.config import load_config_text
from exporter.demo.server import SimulatedAws
from exporter.sinks.otlp import FIXED_NAMES, cloudwatch_names, metrics_url
from tests.conftest import fast_config, free_port, put_values, start_exporter, start_job, wait_for
from tests.integration.otlp_grpc_receiver import OtlpGrpcReceiver
from tests.integration.otlp_receiver import OtlpReceiver, Point, compare_with_exposition, find

PENDING = "NumberOfRecordsPendingProcessing"
SERIES = "aws_bedrock_batch_number_of_records_pending_processing_maximum"
OTEL_SERIES = "aws.bedrock.batch.number_of_records_pending_processing.maximum"
FAILURES = "bedrock_batch_exporter_otlp_export_failures_total"
# Values that move between two reads of the same snapshot (they are computed from the clock at read time).


def config_text(aws: SimulatedAws, otlp: str, mode: str = "both") -> str:
    return fast_config(aws.url, account_id=None, head=f"mode: {mode}\notlp:\n{otlp}")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver().start()
    yield server
    server.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# what a call or a cycle that ends after the poller stopped still counts
CALL_COUNTERS = ("bedrock_batch_exporter_aws_", "bedrock_batch_exporter_cloudwatch_", "bedrock_batch_exporter_cycle")


def both_sinks(exporter: Exporter, url: str, receiver: OtlpReceiver | OtlpGrpcReceiver) -> tuple[str, list[Point]]:
    """Once model-a's 42 and a job show on /metrics and the receiver has data: freeze the Snapshot, push once, and
    read /metrics and the pushed points, both from that one Snapshot."""

    def scraped() -> bool:
        body = get(url + "/metrics")[1]
        samples = [s for f in text_string_to_metric_families(body) for s in f.samples]
        return "bedrock_batch_job_info{" in body and any(
            s.name == SERIES and s.labels["dimension_ModelId"] == "model-a" and s.value == 42.0 for s in samples
        )

    wait_for(scraped, timeout=15)
    wait_for(lambda: find(receiver.latest(), "bedrock_batch.job.info"), timeout=10)
    exporter.poller.stop()  # abandons calls in flight: one that ends later still counts itself

    def calls() -> list[str]:
        return [line for line in get(url + "/metrics")[1].splitlines() if line.startswith(CALL_COUNTERS)]

    before: list[list[str]] = [calls()]

    def settled() -> bool:  # the call counters unchanged over 0.3 s: no abandoned call is still finishing
        time.sleep(0.3)
        now = calls()
        same, before[0] = now == before[0], now
        return same

    wait_for(settled, timeout=15)
    assert exporter.otlp is not None and exporter.otlp.export()
    return get(url + "/metrics")[1], receiver.latest()


def test_otlp_carries_what_metrics_shows(
    fresh_aws: SimulatedAws, receiver: OtlpReceiver, exporters: list[Exporter], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    put_values(fresh_aws, {(PENDING, "model-a"): 42.0, (PENDING, "model-b"): 7.0})
    start_job(fresh_aws, "model-a")
    otlp = f"""  endpoint: {receiver.url}
  interval: 1s
  timeout: 2s
  headers: {{authorization: "Bearer ${{OTLP_TOKEN}}"}}
  resource_attributes: {{deployment.environment: test}}"""
    exporter, url = start_exporter(exporters, config_text(fresh_aws, otlp), env={"OTLP_TOKEN": "s3cret-token"})
    assert "s3cret-token" not in repr(exporter.config)

    body, points = both_sinks(exporter, url, receiver)

    # Names, units, attributes, resource.
    point = find(points, OTEL_SERIES, **{"aws.bedrock.model_id": "model-a"})
    assert point is not None and point.kind == "gauge" and point.unit == "{record}" and point.value == 42.0
    assert set(point.attributes) == {"cloud.account.id", "cloud.region", "aws.bedrock.model_id"}
    assert point.attributes["cloud.region"] == "us-east-1" and point.attributes["cloud.account.id"].isdigit()
    assert point.scope == "bedrock-batch-exporter"
    resource = point.resource
    assert resource["service.name"] == "bedrock-batch-exporter" and resource["service.version"] == __version__
    assert resource["cloud.provider"] == "aws" and resource["deployment.environment"] == "test"
    assert resource["telemetry.sdk.language"] == "python" and resource["service.instance.id"]
    info = find(points, "bedrock_batch.job.info", **{"aws.bedrock.model_id": "model-a"})
    assert info is not None and {"aws.bedrock.job.arn", "aws.bedrock.job.status"} <= set(info.attributes)
    requests = find(points, "bedrock_batch_exporter.aws.api.requests", **{"rpc.method": "GetMetricData"})
    assert requests is not None and requests.kind == "sum" and requests.monotonic and requests.unit == "{request}"
    assert requests.temporality == 2 and 0 < requests.start_ns < requests.time_ns  # cumulative
    age = find(points, "bedrock_batch_exporter.data_age")
    assert age is not None and age.unit == "s"
    assert not any(p.name.startswith(("process", "python")) for p in points)

    # Every series of /metrics (but the runtime ones) arrived with the same value.
    names = {**FIXED_NAMES, **cloudwatch_names(exporter.config.namespaces)}
    compared = compare_with_exposition(body, points, names)
    assert compared >= 30
    assert {p.name for p in points} >= {OTEL_SERIES, "bedrock_batch.jobs", "bedrock_batch.model.input_price"}

    # Headers arrive, and are never logged.
    assert receiver.requests()[-1].headers["authorization"] == "Bearer s3cret-token"
    assert "s3cret-token" not in caplog.text


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_receiver_down_slow_and_back(protocol: str, fresh_aws: SimulatedAws, exporters: list[Exporter]) -> None:
    """The same for OTLP/HTTP and OTLP/gRPC: pushes fail within the timeout, are counted, and resume."""
    make = OtlpGrpcReceiver if protocol == "grpc" else OtlpReceiver
    port = free_port()
    receiver = make(port).start()
    otlp = f"  protocol: {protocol}\n  endpoint: http://127.0.0.1:{port}\n  interval: 1s\n  timeout: 500ms"
    exporter, url = start_exporter(exporters, config_text(fresh_aws, otlp, mode="otlp"))
    sink = exporter.otlp
    assert sink is not None
    try:
        # OTLP-only mode: probes only.
        assert get(url + "/healthz")[0] == 200 and get(url + "/metrics")[0] == 404 and get(url + "/")[0] == 404
        wait_for(lambda: get(url + "/readyz")[0] == 200, timeout=10)
        wait_for(receiver.latest, timeout=10)
    finally:
        receiver.stop()

    def failures() -> float:
        return exporter.metrics.registry.get_sample_value(FAILURES) or 0.0

    wait_for(lambda: failures() >= 2, timeout=10)
    began = time.monotonic()
    assert not sink.export()
    down_took = time.monotonic() - began

    slow = make(port)
    slow.delay = 3.0
    slow.start()
    try:
        before = failures()
        began = time.monotonic()
        assert not sink.export()
        slow_took = time.monotonic() - began
        assert failures() > before
        # Both are bounded by the 500 ms timeout (plus the SDK's backoff decision), never by the receiver.
        assert down_took < 1.5 and slow_took < 1.5, (down_took, slow_took)

        slow.delay = 0.0
        counted = failures()
        seen = len(slow.requests())
        # Data resumes, and the failures counted meanwhile arrive too.
        latest = wait_for(
            lambda: (
                len(slow.requests()) > seen
                and (p := find(slow.latest(), "bedrock_batch_exporter.otlp.export.failures")) is not None
                and p.value >= counted
                and slow.latest()
            ),
            timeout=10,
        )
        assert find(latest, "bedrock_batch_exporter.up") is not None
        assert sink._thread is not None and sink._thread.is_alive()
        assert get(url + "/healthz")[0] == 200
    finally:
        slow.stop()


def test_standard_environment_variables_apply_when_config_leaves_fields_unset(
    fresh_aws: SimulatedAws, receiver: OtlpReceiver, exporters: list[Exporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-env,team=ml")
    exporter, _ = start_exporter(exporters, config_text(fresh_aws, "  compression: gzip"))
    assert (
        exporter.otlp is not None and exporter.otlp.interval == 0.2
    )  # the environment is not the config: no bound applies
    wait_for(lambda: len(receiver.requests()) >= 2, timeout=10)
    last = receiver.requests()[-1]
    assert last.headers["x-tenant"] == "acme" and last.headers["content-encoding"] == "gzip"
    point = last.points[0]
    assert point.resource["service.name"] == "from-env" and point.resource["team"] == "ml"
    assert point.resource["cloud.provider"] == "aws"
    sums = [p for p in last.points if p.kind == "sum"]
    assert sums and all(p.temporality == 1 for p in sums)  # delta

    # Config wins over the environment where it sets a field.
    config = load_config_text(
        config_text(fresh_aws, "  endpoint: http://127.0.0.1:1/otlp/\n  resource_attributes: {service.name: mine}"),
        env={},
    )
    other = Exporter(config)
    assert other.otlp is not None and other.otlp.resource.attributes["service.name"] == "mine"
    assert other.otlp.endpoint == "http://127.0.0.1:1/otlp/v1/metrics"
    other.otlp.stop()
    assert metrics_url("http://c:4318") == "http://c:4318/v1/metrics" == metrics_url("http://c:4318/v1/metrics")


def test_demo_pushes_over_otlp(receiver: OtlpReceiver) -> None:
    port = free_port()
    args = ["demo", "--listen-address", f"127.0.0.1:{port}", "--otlp-endpoint", receiver.url, "--duration", "60"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        points = wait_for(
            lambda: (p := receiver.latest()) and any(x.name.startswith("aws.bedrock.batch.") for x in p) and p,
            timeout=30,
            interval=0.5,
        )
        assert any(p.name == "bedrock_batch.job.info" for p in points)
        assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200  # both sinks
    finally:
        proc.terminate()
        proc.wait(timeout=20)
