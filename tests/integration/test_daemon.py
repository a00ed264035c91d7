"""The running daemon: scrapes never wait on AWS, last good values survive a hanging AWS, data age rises."""

from __future__ import annotations

import gzip
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.config import load_config_text
from exporter.demo.server import SimulatedAws
from tests.conftest import fast_config, put_values, wait_for

PENDING = "NumberOfRecordsPendingProcessing"
SERIES = "aws_bedrock_batch_number_of_records_pending_processing_maximum"


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[float, dict[str, float], dict[str, str]]:
    """(seconds taken, samples by 'name{ModelId}' or name, response headers)."""
    request = urllib.request.Request(url + "/metrics", headers=headers or {})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
        elapsed = time.monotonic() - started
        head = dict(response.headers)
    if head.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            model = s.labels.get("dimension_ModelId")
            samples[f"{s.name}{{{model}}}" if model else s.name] = s.value
    return elapsed, samples, head


@pytest.fixture
def daemon(fresh_aws: SimulatedAws) -> Iterator[tuple[Exporter, str]]:
    now = datetime.now(UTC) - timedelta(seconds=15)  # inside the first cycle's window (period 10s, delay 0)
    put_values(fresh_aws, {(PENDING, "model-a"): 42.0, (PENDING, "model-b"): 7.0}, when=now)
    config = load_config_text(
        fast_config(fresh_aws.url, aws="max_attempts: 1, read_timeout: 1s, connect_timeout: 1s", jobs=None), env={}
    )
    exporter = Exporter(config)
    url = exporter.start("127.0.0.1:0")
    yield exporter, url
    fresh_aws.delay = 0
    exporter.stop()


def test_metrics_health_and_readiness(daemon: tuple[Exporter, str]) -> None:
    _, url = daemon
    wait_for(lambda: status(url + "/readyz") == 200)
    _, samples, headers = scrape(url)
    assert samples[f"{SERIES}{{model-a}}"] == 42.0
    assert samples[f"{SERIES}{{model-b}}"] == 7.0
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    _, zipped, headers = scrape(url, {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert zipped[f"{SERIES}{{model-a}}"] == 42.0
    assert status(url + "/healthz") == 200
    assert status(url + "/nope") == 404
    assert status(url + "/metrics/x") == 404
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(url + "/metrics", data=b"x", method="POST"), timeout=5)
    assert info.value.code == 405 and info.value.headers["Allow"] == "GET, HEAD"


def test_hanging_aws_keeps_last_values_and_scrapes_fast(daemon: tuple[Exporter, str], fresh_aws: SimulatedAws) -> None:
    exporter, url = daemon
    wait_for(lambda: scrape(url)[1].get(f"{SERIES}{{model-a}}") == 42.0)
    fresh_aws.delay = 30.0  # every AWS call now hangs past the 1s read timeout
    down = "bedrock_batch_exporter_up"
    wait_for(lambda: scrape(url)[1].get(down) == 0.0, timeout=15)
    ages = []
    for _ in range(3):
        elapsed, samples, _ = scrape(url)
        assert elapsed < 1.0
        assert samples[f"{SERIES}{{model-a}}"] == 42.0
        ages.append(samples["bedrock_batch_exporter_data_age_seconds"])
        time.sleep(0.6)
    assert ages[0] < ages[1] < ages[2]
    assert samples["bedrock_batch_exporter_consecutive_failures"] >= 1
    state = next(iter(exporter.store.snapshot.tasks.values()))
    assert state.last_error is not None and "timeout" in state.last_error.lower()
    fresh_aws.delay = 0.0
    wait_for(lambda: scrape(url)[1].get(down) == 1.0, timeout=15)
    assert scrape(url)[1]["bedrock_batch_exporter_data_age_seconds"] < 5


def test_discovery_is_cached_between_cycles(daemon: tuple[Exporter, str], fresh_aws: SimulatedAws) -> None:
    _, url = daemon
    wait_for(lambda: scrape(url)[1].get("bedrock_batch_exporter_cycles_total", 0) >= 3, timeout=15)
    # refresh_interval defaults to 10 minutes: one ListMetrics for several cycles
    assert fresh_aws.count("ListMetrics") == 1
    assert fresh_aws.count("GetMetricData") >= 3


def test_stop_during_a_cycle_ends_every_polling_thread(fresh_aws: SimulatedAws) -> None:
    """A stop (or a reload) while a cycle waits for queued GetMetricData calls: the pool cancels them, the cycle
    ends, no thread is left waiting (one was, for ever, and kept the interpreter from exiting)."""
    import threading

    put_values(fresh_aws, {(PENDING, f"model-{i}"): float(i) for i in range(30)}, when=datetime.now(UTC))
    aws = "max_attempts: 1, read_timeout: 5s, max_concurrent_requests: 1, max_queries_per_call: 1"
    before = set(threading.enumerate())
    exporter = Exporter(load_config_text(fast_config(fresh_aws.url, aws=aws, jobs=None), env={}))
    fresh_aws.delay = 0.3  # 30 calls one at a time: most of them still queued when the stop comes
    exporter.start("127.0.0.1:0")
    try:
        wait_for(lambda: fresh_aws.count("GetMetricData") >= 2, timeout=20)
    finally:
        exporter.stop()
    wait_for(lambda: not [t for t in set(threading.enumerate()) - before if t.is_alive()], timeout=10)


def test_a_serving_exporter_freezes_what_lives_at_start_and_stopping_or_reloading_puts_it_back(
    fresh_aws: SimulatedAws,
) -> None:
    import gc

    config = load_config_text(fast_config(fresh_aws.url, aws="max_attempts: 1", jobs=None), env={})
    exporter = Exporter(config)
    exporter.start("127.0.0.1:0")
    try:
        assert gc.isenabled() and gc.get_freeze_count() > 0  # the cyclic collector runs, but skips the start-up
        exporter.reload(config)
        assert gc.get_freeze_count() == 0  # the replaced generation may be frozen garbage: collectable again
    finally:
        exporter.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0
