"""Faults between the exporter and AWS: the daemon keeps serving its last good data, counts the error, recovers.

Each case here is a row of docs/reliability.md.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.aws.bedrock import MAX_PAGES
from exporter.aws.cloudwatch import MAX_LIST_PAGES
from exporter.config import load_config_text
from exporter.demo.server import SimulatedAws
from tests.conftest import FAST_JOBS, fast_config, put_as_role, put_values, start_job, wait_for
from tests.integration.fault_proxy import Fault, FaultProxy, endless_jobs, extra_points, job_values, oversized
from tests.integration.test_jobs import ROLE_ARN, recent

PENDING = "NumberOfRecordsPendingProcessing"
SERIES = "aws_bedrock_batch_number_of_records_pending_processing_maximum"
NS = "AWS/Bedrock/Batch"

# fault kind -> the outcome label it must be counted under, and whether botocore retries it
CLOUDWATCH_FAULTS = {
    "throttle": ("throttled", True),
    "http500": ("server_error", True),
    "http503": ("server_error", True),
    "reset": ("connection_error", True),
    "slow": ("timeout", True),
    "truncated": ("bad_answer", False),
    "malformed": ("bad_answer", False),
    "access_denied": ("access_denied", False),
    "expired_token": ("expired_credentials", False),
}


@pytest.fixture
def proxy(fresh_aws: SimulatedAws) -> Iterator[FaultProxy]:
    server = FaultProxy(fresh_aws.url).start()
    yield server
    server.stop()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(url: str, name: str, **labels: str) -> float | None:
    total = None
    for (sample, sample_labels), value in scrape(url).items():
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items()):
            total = (total or 0.0) + value
    return total


def start_behind_proxy(aws_url: str, extra_target: str = "", jobs: bool = False, aws: str = "") -> tuple[Exporter, str]:
    targets = f"  - endpoint_url: {aws_url}\n    regions: [us-east-1]\n{extra_target}"
    text = fast_config(
        aws_url,
        targets=targets,
        aws="max_attempts: 2, read_timeout: 1s, connect_timeout: 1s" + (f", {aws}" if aws else ""),
        jobs=FAST_JOBS if jobs else None,
    )
    exporter = Exporter(load_config_text(text, env={}))
    return exporter, exporter.start("127.0.0.1:0")


@pytest.mark.parametrize("kind", sorted(CLOUDWATCH_FAULTS))
def test_cloudwatch_fault_keeps_last_values_counts_and_recovers(
    kind: str, fresh_aws: SimulatedAws, proxy: FaultProxy
) -> None:
    outcome, retried = CLOUDWATCH_FAULTS[kind]
    put_values(fresh_aws, {(PENDING, "model-a"): 42.0}, when=recent())
    exporter, url = start_behind_proxy(proxy.url)
    try:
        wait_for(lambda: get(url, SERIES) == 42.0)
        proxy.set(Fault(kind, operation="GetMetricData", seconds=3.0))
        wait_for(lambda: get(url, "bedrock_batch_exporter_up", namespace=NS) == 0.0, timeout=20)
        # the process serves the last good value, with a data age that keeps rising
        assert get(url, SERIES) == 42.0
        first_age = get(url, "bedrock_batch_exporter_data_age_seconds", namespace=NS)
        wait_for(lambda: (get(url, "bedrock_batch_exporter_data_age_seconds", namespace=NS) or 0) > (first_age or 0))
        if outcome == "bad_answer":  # the HTTP call went through; our answer check refused what came back
            counted = get(url, "bedrock_batch_exporter_aws_bad_answers_total", operation="GetMetricData")
        else:
            counted = get(
                url, "bedrock_batch_exporter_aws_api_requests_total", operation="GetMetricData", outcome=outcome
            )
        assert counted is not None and counted >= 1, scrape(url)
        if retried and kind not in ("reset", "slow"):  # errors with an answer carry the retry count
            assert (get(url, "bedrock_batch_exporter_aws_api_retries_total", operation="GetMetricData") or 0) >= 1
        injected = proxy.injected[("GetMetricData", kind)]
        assert injected >= (2 if retried else 1)  # botocore's own retries went through the proxy too
        # the fault clears: data comes back on the next cycle
        proxy.clear()
        wait_for(lambda: get(url, "bedrock_batch_exporter_up", namespace=NS) == 1.0, timeout=20)
        assert (get(url, "bedrock_batch_exporter_data_age_seconds", namespace=NS) or 99) < 5
    finally:
        exporter.stop()


def test_partial_data_is_followed_across_pages(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    values = {(PENDING, f"model-{i}"): float(i) for i in range(6)}
    put_values(fresh_aws, values, when=recent())
    proxy.set(Fault("partial", operation="GetMetricData"))
    exporter, url = start_behind_proxy(proxy.url)
    try:
        wait_for(lambda: all(get(url, SERIES, dimension_ModelId=f"model-{i}") == i for i in range(6)))
        assert get(url, "bedrock_batch_exporter_up", namespace=NS) == 1.0
        # two pages per cycle, both billed
        cycles = get(url, "bedrock_batch_exporter_cycles_total", namespace=NS, outcome="success") or 0
        calls = get(url, "bedrock_batch_exporter_aws_api_requests_total", operation="GetMetricData") or 0
        assert calls >= 2 * cycles
    finally:
        exporter.stop()


def test_list_metrics_failure_after_discovery_keeps_polling(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 7.0}, when=recent())
    exporter, url = start_behind_proxy(proxy.url)
    try:
        wait_for(lambda: get(url, SERIES) == 7.0)
        task = exporter.poller.tasks[0]
        proxy.set(Fault("http503", operation="ListMetrics"))
        task._discovered_at = float("-inf")  # force a refresh now instead of in 10 minutes
        wait_for(lambda: (get(url, "bedrock_batch_exporter_discovery_errors_total") or 0) >= 1, timeout=20)
        assert get(url, "bedrock_batch_exporter_up", namespace=NS) == 1.0
        assert get(url, SERIES) == 7.0
    finally:
        exporter.stop()


@pytest.mark.parametrize("kind", ["throttle", "http500", "access_denied"])
def test_job_api_faults_fail_open(kind: str, fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 3.0}, when=recent())
    proxy.set(Fault(kind, operation="ListModelInvocationJobs"))
    exporter, url = start_behind_proxy(proxy.url, jobs=True)
    try:
        # no job is visible, yet metrics flow: fail open
        wait_for(
            lambda: get(url, SERIES) == 3.0 and get(url, "bedrock_batch_exporter_up", namespace="bedrock:jobs") == 0
        )
        assert get(url, "bedrock_batch_exporter_polling_active", namespace=NS) == 1.0
        proxy.clear()
        wait_for(lambda: get(url, "bedrock_batch_exporter_up", namespace="bedrock:jobs") == 1.0, timeout=20)
        # now the job API answers and no job runs: CloudWatch polling pauses
        wait_for(lambda: get(url, "bedrock_batch_exporter_polling_active", namespace=NS) == 0.0, timeout=10)
        start_job(fresh_aws, "model-a")
        wait_for(lambda: get(url, "bedrock_batch_exporter_polling_active", namespace=NS) == 1.0, timeout=10)
    finally:
        exporter.stop()


def test_expired_credentials_are_refreshed(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    put_as_role(fresh_aws, ROLE_ARN, PENDING, "m", 9.0, recent())
    exporter, url = start_behind_proxy(proxy.url, extra_target=f"    role_arn: {ROLE_ARN}\n")
    try:
        wait_for(lambda: get(url, SERIES, account_id="111111111111") == 9.0)
        assumed = fresh_aws.count("AssumeRole")
        proxy.set(Fault("expired_token", operation="GetMetricData"))
        wait_for(lambda: get(url, "bedrock_batch_exporter_up", namespace=NS) == 0.0, timeout=20)
        proxy.clear()
        wait_for(lambda: get(url, "bedrock_batch_exporter_up", namespace=NS) == 1.0, timeout=20)
        assert fresh_aws.count("AssumeRole") > assumed  # a fresh assume-role, not the stale keys
    finally:
        exporter.stop()


def test_backoff_spaces_out_failing_cycles(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 1.0}, when=recent())
    proxy.set(Fault("access_denied", operation="GetMetricData"))
    exporter, url = start_behind_proxy(proxy.url)
    try:
        started = time.monotonic()
        wait_for(lambda: (get(url, "bedrock_batch_exporter_consecutive_failures", namespace=NS) or 0) >= 4, timeout=30)
        # intervals of 1s, then about 2s and up to 4s with jitter: four failures need well over 4 intervals
        assert time.monotonic() - started > 4.5
    finally:
        exporter.stop()


def test_failed_credential_refresh_is_one_line_naming_target_and_cause(
    fresh_aws: SimulatedAws, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    put_as_role(fresh_aws, ROLE_ARN, PENDING, "m", 9.0, recent())
    exporter, url = start_behind_proxy(proxy.url, extra_target=f"    role_arn: {ROLE_ARN}\n")
    try:
        wait_for(lambda: get(url, SERIES, account_id="111111111111") == 9.0)
        caplog.clear()
        caplog.set_level(logging.INFO)
        # the keys expire, and the fresh assume-role that follows fails too: every refresh fails
        proxy.set(Fault("expired_token"))
        # the proxy answers STS's AssumeRole (its "POST /") with a JSON error that STS's XML parser cannot read
        wait_for(lambda: proxy.injected[("POST /", "expired_token")] >= 2, timeout=20)
        wait_for(lambda: get(url, "bedrock_batch_exporter_up", namespace=NS, account_id="111111111111") == 0.0)
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not [r for r in loud if r.exc_info or "Traceback" in r.getMessage()]
        assert not [r for r in loud if r.name == "botocore.credentials"]  # the poller's line says it instead
        refresh = [r.getMessage() for r in loud if "GetMetricData" not in r.getMessage()]
        assert refresh and all(f"us-east-1 ({ROLE_ARN}) failed: ResponseParserError" in m for m in refresh)
        assert all("\n" not in r.getMessage() for r in loud)
    finally:
        exporter.stop()


def status_tasks(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "/api/status", timeout=5) as response:
        status = json.load(response)
    return [task for region in status["regions"]["items"] for task in region["tasks"]]


def test_one_bad_job_summary_costs_that_job_only(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    for name in ("good", "bad-end", "bad-submit", "far-future"):
        fresh_aws.jobs.submit(name, "model-a", 10, "us-east-1", now=time.time() - 60)
    bad_values = {
        "bad-end": {"endTime": "not a date"},
        "bad-submit": {"submitTime": 1e12},  # epoch seconds in the year 33658
        "far-future": {"jobExpirationTime": time.time() + 400 * 86400},
    }
    proxy.set(job_values(bad_values))
    exporter, url = start_behind_proxy(proxy.url, jobs=True)
    try:
        wait_for(lambda: get(url, "bedrock_batch_job_info", job_name="good") == 1)
        assert get(url, "bedrock_batch_exporter_up", namespace="bedrock:jobs") == 1
        for name in ("bad-end", "bad-submit", "far-future"):
            assert get(url, "bedrock_batch_job_info", job_name=name) is None
        bad = "bedrock_batch_exporter_aws_bad_records_total"
        assert get(url, bad, member="endTime", reason="malformed")
        assert get(url, bad, member="submitTime", reason="out_of_range")
        assert (get(url, bad, member="jobExpirationTime", reason="out_of_range") or 0) >= 1
        jobs_task = next(t for t in status_tasks(url) if t["namespace"] == "bedrock:jobs")
        assert jobs_task["bad_records"] == {
            "endTime: malformed": 1,
            "submitTime: out_of_range": 1,
            "jobExpirationTime: out_of_range": 1,
        }
    finally:
        exporter.stop()


def test_a_job_listing_that_never_ends_is_cut_short_counted_and_kept(
    fresh_aws: SimulatedAws, proxy: FaultProxy
) -> None:
    fresh_aws.jobs.submit("listed", "model-a", 10, "us-east-1", now=time.time() - 60)
    proxy.set(endless_jobs())
    exporter, url = start_behind_proxy(proxy.url, jobs=True)
    try:
        bad = "bedrock_batch_exporter_aws_bad_answers_total"
        wait_for(lambda: (get(url, bad, operation="ListModelInvocationJobs") or 0) >= 1, timeout=30)
        assert get(url, "bedrock_batch_job_info", job_name="listed") == 1  # the data read so far is kept
        assert get(url, "bedrock_batch_exporter_up", namespace="bedrock:jobs") == 1
        calls = proxy.count("ListModelInvocationJobs")
        cycles = get(url, "bedrock_batch_exporter_cycles_total", namespace="bedrock:jobs") or 0
        assert calls <= (cycles + 1) * MAX_PAGES  # each cycle stops at the page cap
        jobs_task = next(t for t in status_tasks(url) if t["namespace"] == "bedrock:jobs")
        assert "did not end after" in jobs_task["last_error"]["message"]
    finally:
        exporter.stop()


def test_datapoints_outside_the_requested_window_are_not_values(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 7.0}, when=recent())
    far = ((0.0, 1.0), (-86400.0, 2.0), (1e15, 3.0), (time.time() + 10 * 86400, 4.0))  # 1970, negative, 1e15, +10d
    proxy.set(extra_points(far))
    exporter, url = start_behind_proxy(proxy.url)
    try:
        bad = "bedrock_batch_exporter_aws_bad_answers_total"
        wait_for(lambda: (get(url, bad, operation="GetMetricData") or 0) >= 1)
        wait_for(lambda: get(url, SERIES, dimension_ModelId="model-a") is not None)
        assert get(url, SERIES, dimension_ModelId="model-a") == 7.0  # the value in the window, not the far ones
        for task in status_tasks(url):
            for field in ("newest_datapoint_age_seconds", "last_success_age_seconds"):
                assert task[field] is None or task[field] >= 0
    finally:
        exporter.stop()


def test_a_list_metrics_token_that_never_ends_is_a_bad_answer(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 1.0}, when=recent())
    proxy.set(endless_jobs("ListMetrics"))
    exporter, url = start_behind_proxy(proxy.url)
    try:
        bad = "bedrock_batch_exporter_aws_bad_answers_total"
        wait_for(lambda: (get(url, bad, operation="ListMetrics") or 0) >= 1, timeout=30)
        assert proxy.count("ListMetrics") <= 2 * MAX_LIST_PAGES  # the first discovery stopped at the cap
        proxy.clear()
        wait_for(lambda: get(url, SERIES, dimension_ModelId="model-a") == 1.0, timeout=20)  # and recovers
    finally:
        exporter.stop()


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "without-length"])
def test_an_answer_over_the_size_cap_is_not_read_and_counts_as_bad(
    chunked: bool, fresh_aws: SimulatedAws, proxy: FaultProxy
) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 42.0}, when=recent())
    fresh_aws.jobs.submit("kept", "model-a", 10, "us-east-1", now=time.time() - 60)
    exporter, url = start_behind_proxy(proxy.url, jobs=True, aws="max_answer_bytes: 65536")
    try:
        wait_for(lambda: get(url, SERIES) == 42.0 and get(url, "bedrock_batch_job_info", job_name="kept") == 1)
        size = 8 * 1024 * 1024  # 128 times the cap
        proxy.set(oversized("GetMetricData", size, chunked), oversized("ListModelInvocationJobs", size, chunked))
        bad = "bedrock_batch_exporter_aws_bad_answers_total"
        wait_for(lambda: (get(url, bad, operation="GetMetricData") or 0) >= 1, timeout=20)
        wait_for(lambda: (get(url, bad, operation="ListModelInvocationJobs") or 0) >= 1, timeout=20)
        assert get(url, SERIES) == 42.0  # the last good values stay
        assert get(url, "bedrock_batch_job_info", job_name="kept") == 1
        assert get(url, "bedrock_batch_exporter_up", namespace=NS) == 0.0
        tasks = {t["namespace"]: t for t in status_tasks(url)}
        assert "over the 65536-byte cap" in tasks[NS]["last_error"]["message"]
        assert "aws.max_answer_bytes" in tasks["bedrock:jobs"]["last_error"]["message"]
        proxy.clear()  # a normal answer is read again
        wait_for(lambda: get(url, "bedrock_batch_exporter_up", namespace=NS) == 1.0, timeout=20)
    finally:
        exporter.stop()


def test_series_over_max_series_are_not_polled_and_are_shown(fresh_aws: SimulatedAws) -> None:
    put_values(fresh_aws, {(PENDING, f"model-{i}"): float(i) for i in range(6)}, when=recent())
    capped = "    delay: 0s\n    discovery: {max_series: 4}\n"
    text = fast_config(fresh_aws.url, jobs=None).replace("    delay: 0s\n", capped)
    assert "max_series: 4" in text
    exporter = Exporter(load_config_text(text, env={}))
    url = exporter.start("127.0.0.1:0")
    try:
        gauge = "bedrock_batch_exporter_series_not_polled"
        wait_for(lambda: get(url, gauge, namespace=NS) == 2.0 and get(url, SERIES, dimension_ModelId="model-3"))
        polled = {dict(labels).get("dimension_ModelId") for name, labels in scrape(url) if name == SERIES}
        assert polled == {"model-0", "model-1", "model-2", "model-3"}  # the same first four in sorted order
        task = next(t for t in status_tasks(url) if t["namespace"] == NS)
        assert task["series_dropped"] == 2 and task["series"] == 4
        with urllib.request.urlopen(url + "/", timeout=5) as response:
            assert "2 series over discovery.max_series are not polled" in response.read().decode()
    finally:
        exporter.stop()
