"""Job collector, job-aware polling and several accounts/regions, against moto and the job fake over HTTP."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.demo.jobs import JobSimulator
from exporter.demo.server import SimulatedAws
from tests.conftest import FAST_JOBS, fast_config, put_values, start_exporter, start_job, wait_for

PENDING = "NumberOfRecordsPendingProcessing"
SERIES = "aws_bedrock_batch_number_of_records_pending_processing_maximum"
ROLE_ARN = "arn:aws:iam::111111111111:role/bedrock-batch-reader"  # a test fixture account


def samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def value(url: str, name: str, **labels: str) -> float | None:
    for sample_name, sample_labels, sample_value in samples(url):
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
            return sample_value
    return None


def config_text(aws: SimulatedAws, targets: str | None = None, jobs: str = FAST_JOBS) -> str:
    return fast_config(aws.url, targets=targets, account_id=None, jobs=jobs)


def recent() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=15)


def test_job_series_follow_the_job_api(fresh_aws: SimulatedAws, exporters: list[Exporter]) -> None:
    jobs = fresh_aws.jobs
    now = time.time()
    run = jobs.submit("nightly", "model-a", 1000, "us-east-1", now=now - 60)
    jobs.update(
        run["jobArn"], status="InProgress", processedRecordCount=400, successRecordCount=390, errorRecordCount=10
    )
    jobs.submit("queued", "model-b", 50, "us-east-1", now=now - 30)
    old = jobs.submit("last-week", "model-a", 10, "us-east-1", now=now - 5 * 86400)
    jobs.update(old["jobArn"], status="Completed", endTime=now - 4 * 86400)  # past retention: not exported
    _, url = start_exporter(exporters, config_text(fresh_aws))
    wait_for(lambda: value(url, "bedrock_batch_job_processed_records", job_name="nightly") == 400)
    assert value(url, "bedrock_batch_job_input_records", job_name="nightly") == 1000
    assert value(url, "bedrock_batch_job_failed_records", job_name="nightly") == 10
    assert value(url, "bedrock_batch_job_info", job_name="queued", status="Submitted") == 1
    assert value(url, "bedrock_batch_job_info", job_name="last-week") is None
    assert value(url, "bedrock_batch_jobs", model_id="model-a", status="InProgress") == 1
    assert value(url, "bedrock_batch_jobs", model_id="model-a", status="Expired") == 0
    assert value(url, "bedrock_batch_jobs", model_id="model-b", status="Submitted") == 1
    expires = value(url, "bedrock_batch_job_expiration_timestamp_seconds", job_name="nightly")
    assert expires == pytest.approx(now - 60 + 72 * 3600, abs=1)
    # the job fails: the status moves, and the transition is counted once
    jobs.update(run["jobArn"], status="Failed", endTime=time.time())
    wait_for(lambda: value(url, "bedrock_batch_jobs_finished_total", model_id="model-a", status="Failed") == 1)
    assert value(url, "bedrock_batch_jobs", model_id="model-a", status="Failed") == 1
    assert value(url, "bedrock_batch_job_end_timestamp_seconds", job_name="nightly") is not None
    assert (
        value(
            url,
            "bedrock_batch_model_input_price_dollars_per_million_tokens",
            model_id="anthropic.claude-3-5-sonnet-20240620-v1:0",
        )
        == 1.5
    )


def test_idle_region_costs_no_get_metric_data(fresh_aws: SimulatedAws, exporters: list[Exporter]) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 42.0}, when=recent())
    arn = start_job(fresh_aws, "model-a")
    _, url = start_exporter(exporters, config_text(fresh_aws))
    wait_for(lambda: value(url, SERIES, dimension_ModelId="model-a") == 42.0)
    assert value(url, "bedrock_batch_exporter_polling_active", namespace="AWS/Bedrock/Batch") == 1
    fresh_aws.jobs.update(arn, status="Completed", endTime=time.time())
    wait_for(lambda: value(url, "bedrock_batch_exporter_polling_active", namespace="AWS/Bedrock/Batch") == 0)
    # the series shows its missing-data value (zero), not the stale 42
    assert value(url, SERIES, dimension_ModelId="model-a") == 0.0
    calls = fresh_aws.count("GetMetricData"), fresh_aws.count("ListMetrics")
    job_polls = fresh_aws.count("ListModelInvocationJobs")
    time.sleep(4.0)  # four metric intervals while idle
    assert (fresh_aws.count("GetMetricData"), fresh_aws.count("ListMetrics")) == calls
    assert fresh_aws.count("ListModelInvocationJobs") >= job_polls + 2  # jobs are still watched
    assert value(url, "bedrock_batch_exporter_up", namespace="AWS/Bedrock/Batch") == 1
    # a job appears: CloudWatch is read again within about one job interval
    submitted = time.monotonic()
    start_job(fresh_aws, "model-b")
    wait_for(lambda: fresh_aws.count("GetMetricData") > calls[0], timeout=10, interval=0.02)
    assert time.monotonic() - submitted < 2.5
    wait_for(lambda: value(url, SERIES, dimension_ModelId="model-a") == 42.0)


def test_job_api_failure_fails_open(
    fresh_aws: SimulatedAws, exporters: list[Exporter], caplog: pytest.LogCaptureFixture
) -> None:
    put_values(fresh_aws, {(PENDING, "model-a"): 5.0}, when=recent())
    fresh_aws.jobs.throttle_next(10_000)  # every job listing is throttled, even after botocore's retries
    caplog.set_level(logging.WARNING, logger="exporter.poller")
    _, url = start_exporter(exporters, config_text(fresh_aws))
    wait_for(lambda: value(url, SERIES, dimension_ModelId="model-a") == 5.0)
    wait_for(lambda: fresh_aws.count("ListModelInvocationJobs") >= 6)
    assert value(url, "bedrock_batch_exporter_up", namespace="bedrock:jobs") == 0
    assert value(url, "bedrock_batch_exporter_polling_active", namespace="AWS/Bedrock/Batch") == 1
    assert (
        value(
            url,
            "bedrock_batch_exporter_aws_api_requests_total",
            operation="ListModelInvocationJobs",
            outcome="throttled",
        )
        or 0
    ) >= 2
    failures = [r for r in caplog.records if "bedrock:jobs" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]  # logged once per state change, not per cycle
    fresh_aws.jobs.throttle_next(0)


def test_two_accounts_two_regions_one_broken(fresh_aws: SimulatedAws, exporters: list[Exporter]) -> None:
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=fresh_aws.url)
    creds = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="test")["Credentials"]
    role_keys = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    main_account = sts.get_caller_identity()["Account"]
    for region in ("us-east-1", "eu-west-1"):
        put_values(fresh_aws, {(PENDING, f"main-{region}"): 1.0}, region=region, when=recent())
        client = boto3.client("cloudwatch", region_name=region, endpoint_url=fresh_aws.url, **role_keys)
        client.put_metric_data(
            Namespace="AWS/Bedrock/Batch",
            MetricData=[
                {
                    "MetricName": PENDING,
                    "Dimensions": [{"Name": "ModelId", "Value": f"role-{region}"}],
                    "Value": 2.0,
                    "Timestamp": recent(),
                }
            ],
        )
    fresh_aws.broken_regions.add("111111111111:eu-west-1")
    targets = (
        f"  - name: main\n    endpoint_url: {fresh_aws.url}\n    regions: [us-east-1, eu-west-1]\n"
        f"  - name: data-science\n    endpoint_url: {fresh_aws.url}\n    regions: [us-east-1, eu-west-1]\n"
        f"    role_arn: {ROLE_ARN}\n    external_id: test-external-id\n"
    )
    _, url = start_exporter(exporters, config_text(fresh_aws, targets, jobs=FAST_JOBS + ", pause_idle_metrics: false"))
    expected = {
        (main_account, "us-east-1", "main-us-east-1"): 1.0,
        (main_account, "eu-west-1", "main-eu-west-1"): 1.0,
        ("111111111111", "us-east-1", "role-us-east-1"): 2.0,
    }

    def flowing() -> bool:
        got = {
            (labels["account_id"], labels["region"], labels["dimension_ModelId"]): v
            for name, labels, v in samples(url)
            if name == SERIES
        }
        return got == expected

    def ups() -> dict[tuple[str, str], float]:
        return {
            (labels["account_id"], labels["region"]): v
            for name, labels, v in samples(url)
            if name == "bedrock_batch_exporter_up" and labels["namespace"] == "AWS/Bedrock/Batch"
        }

    expected_ups = {
        (main_account, "us-east-1"): 1,
        (main_account, "eu-west-1"): 1,
        ("111111111111", "us-east-1"): 1,
        ("111111111111", "eu-west-1"): 0,
    }
    # the broken region needs botocore's retries to fail; the other three flow meanwhile
    wait_for(lambda: flowing() and ups() == expected_ups, timeout=15)
    assert fresh_aws.count("AssumeRole") >= 1
    errors = value(
        url,
        "bedrock_batch_exporter_aws_api_requests_total",
        account_id="111111111111",
        region="eu-west-1",
        outcome="server_error",
    )
    assert errors is not None and errors >= 1


def test_a_model_at_its_limit_queues_jobs_and_only_running_jobs_get_an_eta(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    store = fresh_aws.jobs
    now = time.time()
    first = store.submit("first", "model-q", 600, "us-east-1", now=now - 5)["jobArn"]
    second = store.submit("second", "model-q", 600, "us-east-1", now=now - 4)["jobArn"]
    simulator = JobSimulator(store, failure_rate=0.0, queue_seconds=(0.1, 0.1), concurrency={"model-q": 1})
    simulator.advance(time.time())
    jobs = FAST_JOBS + ", eta_window: 10s"
    _, url = start_exporter(exporters, config_text(fresh_aws, jobs=jobs))

    def api_jobs() -> dict[str, dict]:  # type: ignore[type-arg]
        with urllib.request.urlopen(url + "/api/status", timeout=5) as response:
            body = json.loads(response.read())
        return {j["job_arn"]: j for j in body["running_jobs"]["items"] + body["finished_jobs"]["items"]}

    def moving(check: Callable[[], bool]) -> Callable[[], bool]:
        def step() -> bool:  # the simulation goes on between checks: 30 records per model per call
            simulator.advance(time.time(), {"model-q": 30.0})
            return check()

        return step

    def first_running_second_waiting() -> bool:
        status = api_jobs()
        one, two = status.get(first, {}), status.get(second, {})
        return (
            one.get("status") == "InProgress"
            and one.get("eta_seconds") is not None
            and two.get("status") == "Scheduled"
            and value(url, "bedrock_batch_job_eta_seconds", job_arn=first) is not None
        )

    wait_for(moving(first_running_second_waiting), timeout=20, interval=0.2, what="a running first job with an ETA")
    assert value(url, "bedrock_batch_jobs", model_id="model-q", status="Scheduled") == 1
    assert value(url, "bedrock_batch_job_eta_seconds", job_arn=second) is None  # waiting: no number
    assert api_jobs()[second]["eta_seconds"] is None
    assert (value(url, "bedrock_batch_model_drain_eta_seconds", model_id="model-q") or 0) > 0

    def first_done_second_running() -> bool:
        return (
            value(url, "bedrock_batch_job_info", job_arn=first, status="Completed") == 1
            and value(url, "bedrock_batch_job_eta_seconds", job_arn=second) is not None
        )

    wait_for(moving(first_done_second_running), timeout=30, interval=0.2, what="the second job running")
    assert value(url, "bedrock_batch_job_eta_seconds", job_arn=first) is None  # finished: no ETA
    assert api_jobs()[first]["eta_seconds"] is None


def test_a_job_flipping_out_of_finished_and_back_is_counted_finished_once(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    jobs = fresh_aws.jobs
    arn = jobs.submit("flapping", "model-a", 10, "us-east-1", now=time.time() - 60)["jobArn"]
    _, url = start_exporter(exporters, config_text(fresh_aws))
    for status in ("InProgress", "Completed", "InProgress", "Completed", "InProgress", "Completed"):
        jobs.update(arn, status=status, **({"endTime": time.time()} if status == "Completed" else {}))
        # each status is seen by the exporter before the next flip
        wait_for(lambda s=status: value(url, "bedrock_batch_job_info", job_name="flapping", status=s) == 1)  # type: ignore[misc]
    assert value(url, "bedrock_batch_jobs_finished_total", model_id="model-a", status="Completed") == 1


def test_jobs_over_the_budget_are_dropped_oldest_finished_first_and_counted(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    jobs = fresh_aws.jobs
    now = time.time()
    for i, name in enumerate(("run-old", "run-new")):
        jobs.update(jobs.submit(name, "model-a", 10, "us-east-1", now=now - 600 + i)["jobArn"], status="InProgress")
    for i, name in enumerate(("done-old", "done-new")):
        arn = jobs.submit(name, "model-a", 10, "us-east-1", now=now - 500 + i)["jobArn"]
        jobs.update(arn, status="Completed", endTime=now - 100 + i)
    _, url = start_exporter(exporters, config_text(fresh_aws, jobs=FAST_JOBS + ", max_jobs: 3"))
    dropped = "bedrock_batch_exporter_jobs_dropped_total"
    wait_for(lambda: value(url, dropped, kind="finished") == 1)
    shown = {s[1].get("job_name") for s in samples(url) if s[0] == "bedrock_batch_job_info"}
    assert shown == {"run-old", "run-new", "done-new"}  # the oldest finished job went first
    jobs.submit("run-third", "model-a", 10, "us-east-1", now=now - 50)
    jobs.submit("run-fourth", "model-a", 10, "us-east-1", now=now - 40)
    wait_for(lambda: (value(url, dropped, kind="running") or 0) >= 1)
    with urllib.request.urlopen(url + "/", timeout=5) as response:
        assert "running jobs over the jobs.max_jobs budget" in response.read().decode()


def test_a_failed_jobs_reason_is_on_metrics_and_its_message_capped_and_escaped_on_the_page(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    arn = start_job(fresh_aws, "model-a")
    hostile = "<img src=x onerror=alert(1)> Access Denied on bucket in " + "&" * 1_000_000  # a 1 MB message
    fresh_aws.jobs.update(
        arn,
        status="Failed",
        endTime=time.time(),
        message=hostile,
        roleArn="arn:aws:iam::123456789012:role/batch-role",
    )
    _, url = start_exporter(exporters, config_text(fresh_aws))
    wait_for(lambda: value(url, "bedrock_batch_job_failure_info", reason="s3_access", status="Failed") == 1)
    assert value(url, "bedrock_batch_job_info", status="Failed") == 1
    with urllib.request.urlopen(url + "/api/status?limit=10", timeout=10) as answer:  # loopback only
        status = json.loads(answer.read())
    (job,) = [j for j in status["finished_jobs"]["items"] if j["job_arn"] == arn]
    assert job["failure_reason"] == "s3_access" and job["role_arn"].endswith("role/batch-role")
    assert len(job["message"]) == 2048 and job["message"].startswith("<img")
    with urllib.request.urlopen(url + "/", timeout=10) as answer:  # loopback only
        page = answer.read().decode()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt; Access Denied" in page
    assert "runbooks#job-failure-s3_access" in page and len(page) < 400_000


def test_queue_wait_histogram_counts_the_jobs_seen_entering_in_progress(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    jobs = fresh_aws.jobs
    waiting = [jobs.submit(f"queued-{i}", "model-q", 100, now=time.time() - 600) for i in range(3)]
    running = jobs.submit("already-running", "model-q", 100, now=time.time() - 600)
    for job in waiting:
        jobs.update(job["jobArn"], status="Scheduled")
    jobs.update(running["jobArn"], status="InProgress")  # first seen running: its wait is unknown, not observed
    _, url = start_exporter(exporters, config_text(fresh_aws))
    wait_for(lambda: value(url, "bedrock_batch_job_info", job_name="queued-0", status="Scheduled") == 1)
    jobs_listed = fresh_aws.count("ListModelInvocationJobs")
    wait_for(lambda: fresh_aws.count("ListModelInvocationJobs") > jobs_listed)  # seen waiting by a whole listing
    for job in waiting[:2]:
        jobs.update(job["jobArn"], status="InProgress")
    count = "bedrock_batch_model_queue_wait_seconds_count"
    wait_for(lambda: value(url, count, model_id="model-q") == 2, what="two jobs seen entering InProgress")
    waited = value(url, "bedrock_batch_model_queue_wait_seconds_sum", model_id="model-q")
    assert waited is not None and 2 * 600 <= waited < 2 * 700  # each at least its 600 s since submission
    assert value(url, "bedrock_batch_model_queue_wait_seconds_bucket", model_id="model-q", le="300.0") == 0
    assert value(url, "bedrock_batch_model_queue_wait_seconds_bucket", model_id="model-q", le="900.0") == 2
    # per running job too, for those seen waiting; none for the job first seen running
    one = value(url, "bedrock_batch_job_queue_wait_seconds", job_name="queued-0")
    assert one is not None and 600 <= one < 700
    assert value(url, "bedrock_batch_job_queue_wait_seconds", job_name="already-running") is None
    assert value(url, "bedrock_batch_job_queue_wait_seconds", job_name="queued-2") is None  # still waiting
    jobs.update(waiting[2]["jobArn"], status="InProgress")
    wait_for(lambda: value(url, count, model_id="model-q") == 3)
    assert value(url, count, model_id="model-q") == 3  # the job first seen running never counts
