"""Answers AWS documents but moto never sends: per-result errors, job statuses the SDK does not list, missing fields.

The fault proxy rewrites real answers of the simulated AWS (shapes from botocore's model), and the exporter must
never turn them into a number AWS did not send.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from exporter.demo.server import SimulatedAws
from tests.conftest import put_values, start_job, wait_for
from tests.integration.fault_proxy import FaultProxy, forbidden_results, stripped_jobs, unknown_job_status
from tests.integration.test_faults import NS, PENDING, SERIES, get, start_behind_proxy
from tests.integration.test_jobs import recent


@pytest.fixture
def proxy(fresh_aws: SimulatedAws) -> Iterator[FaultProxy]:
    server = FaultProxy(fresh_aws.url).start()
    yield server
    server.stop()


def status(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url + "/api/status", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def batch_task(url: str) -> dict:  # type: ignore[type-arg]
    tasks = [t for r in status(url)["regions"]["items"] for t in r["tasks"]]
    return next(t for t in tasks if t["namespace"] == NS)


def test_forbidden_results_keep_the_last_value_never_zero_and_resume(
    fresh_aws: SimulatedAws, proxy: FaultProxy
) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 4200.0}, when=recent())
    exporter, url = start_behind_proxy(proxy.url)
    seen: list[float | None] = []
    try:
        wait_for(lambda: get(url, SERIES) == 4200.0)
        proxy.set(forbidden_results(messages=(("Forbidden", "not authorized for this metric"),)))
        wait_for(
            lambda: (
                (get(url, "bedrock_batch_exporter_cloudwatch_result_errors_total", status_code="Forbidden") or 0) >= 1
            )
        )
        # the status page and its JSON say the task is partial, with CloudWatch's message
        task = batch_task(url)
        assert task["partial"] and task["result_errors"] == {"Forbidden": 1}
        assert "not authorized for this metric" in " ".join(task["result_messages"])
        with urllib.request.urlopen(url + "/", timeout=5) as response:
            assert "partial: CloudWatch answered some series with errors" in response.read().decode()
        # the target stays up (the call worked) while the data ages; the value is the last good one or absent
        assert get(url, "bedrock_batch_exporter_up", namespace=NS) == 1.0
        first_age = get(url, "bedrock_batch_exporter_data_age_seconds", namespace=NS) or 0.0

        def aged() -> bool:
            seen.append(get(url, SERIES))
            return (get(url, "bedrock_batch_exporter_data_age_seconds", namespace=NS) or 0.0) > first_age + 1

        wait_for(aged, timeout=15)
        # after the staleness window (3 intervals of 1 s) the series is gone, not zero
        wait_for(lambda: seen.append(get(url, SERIES)) or seen[-1] is None, timeout=15)
        assert set(seen) <= {4200.0, None} and seen[-1] is None, seen
        proxy.clear()
        wait_for(lambda: get(url, SERIES) == 4200.0, timeout=15)
        assert not batch_task(url)["partial"]
    finally:
        exporter.stop()


def test_a_partial_data_result_with_values_counts_its_values(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 9.0}, when=recent())
    proxy.set(forbidden_results(status_code="PartialData", keep_datapoints=True))
    exporter, url = start_behind_proxy(proxy.url)
    try:
        wait_for(lambda: get(url, SERIES) == 9.0)
        assert not batch_task(url)["partial"]
    finally:
        exporter.stop()


def test_an_unknown_job_status_keeps_cloudwatch_polling_and_is_exported_raw(
    fresh_aws: SimulatedAws, proxy: FaultProxy
) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 5.0}, when=recent())
    start_job(fresh_aws, "model-a")
    proxy.set(unknown_job_status("Paused"))
    exporter, url = start_behind_proxy(proxy.url, jobs=True)
    try:
        wait_for(lambda: get(url, "bedrock_batch_jobs", status="Paused") == 1.0, timeout=15)
        before = proxy.count("GetMetricData")
        wait_for(lambda: proxy.count("GetMetricData") > before + 2, timeout=15)
        assert get(url, "bedrock_batch_exporter_polling_active", namespace=NS) == 1.0
        assert get(url, SERIES) == 5.0
        assert (get(url, "bedrock_batch_exporter_aws_unknown_values_total", field="status") or 0) >= 1
        assert get(url, "bedrock_batch_job_info", status="Paused") == 1.0
    finally:
        exporter.stop()


def test_job_summaries_without_optional_fields_still_show_the_job(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:
    start_job(fresh_aws, "model-a")
    proxy.set(stripped_jobs())
    exporter, url = start_behind_proxy(proxy.url, jobs=True)
    try:
        wait_for(lambda: get(url, "bedrock_batch_job_info") == 1.0, timeout=15)
        assert get(url, "bedrock_batch_exporter_polling_active", namespace=NS) == 1.0
        assert get(url, "bedrock_batch_job_input_records") is None  # absent, never a made-up 0
    finally:
        exporter.stop()
