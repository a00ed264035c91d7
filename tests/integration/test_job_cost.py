"""Exact job cost from Bedrock's manifest, end to end: the job fake, moto's S3 and the exporter's sinks."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import boto3

from exporter.app import Exporter
from exporter.config import load_config_text
from exporter.demo.server import SimulatedAws
from tests.conftest import FAST_JOBS, fast_config, start_exporter, wait_for
from tests.integration.test_faults import get, scrape

BUCKET = "job-cost-test-output"
MODEL = "amazon.nova-pro-v1:0"  # in the shipped price table: $0.80 / $3.20 per million on demand, half for batch


def s3(aws: SimulatedAws) -> Any:
    return boto3.client(
        "s3", endpoint_url=aws.url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def finished_job(aws: SimulatedAws, name: str, ended: float | None = None, tags: dict[str, str] | None = None) -> str:
    job = aws.jobs.submit(name, MODEL, 100, "us-east-1", output_uri=f"s3://{BUCKET}/out/", tags=tags)
    arn = str(job["jobArn"])
    aws.jobs.update(
        arn,
        now=ended,
        status="Completed",
        processedRecordCount=100,
        successRecordCount=100,
        errorRecordCount=0,
    )
    return arn


def config(aws: SimulatedAws) -> str:
    jobs = FAST_JOBS + ", read_manifests: true, manifest_retry: 1s, manifest_give_up_after: 1m"
    return fast_config(aws.url, jobs=jobs)


def test_a_finished_jobs_manifest_gives_its_exact_tokens_and_cost_read_once(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    client = s3(fresh_aws)
    client.create_bucket(Bucket=BUCKET)
    arn = finished_job(fresh_aws, "exact")
    manifest = {
        "totalRecordCount": 100,
        "processedRecordCount": 100,
        "successRecordCount": 100,
        "errorRecordCount": 0,
        "inputTokenCount": 1234,
        "outputTokenCount": 567,
    }
    job_id = arn.rsplit("/", 1)[-1]
    client.put_object(Bucket=BUCKET, Key=f"out/{job_id}/manifest.json.out", Body=json.dumps(manifest).encode())
    _, url = start_exporter(exporters, config(fresh_aws))
    wait_for(lambda: get(url, "bedrock_batch_job_input_tokens", job_arn=arn) == 1234.0, timeout=15)
    assert get(url, "bedrock_batch_job_output_tokens", job_arn=arn) == 567.0
    expected = 1234 / 1e6 * 0.8 * 0.5 + 567 / 1e6 * 3.2 * 0.5
    cost = get(url, "bedrock_batch_job_cost_dollars", job_arn=arn)
    assert cost is not None and abs(cost - expected) < 1e-12
    assert get(url, "bedrock_batch_finished_jobs_input_tokens", model_id=MODEL, status="Completed") == 1234.0
    assert get(url, "bedrock_batch_exporter_manifest_reads_total", outcome="ok") == 1.0
    with urllib.request.urlopen(url + "/api/status", timeout=5) as response:
        (done,) = json.loads(response.read())["finished_jobs"]["items"]
    assert (done["input_tokens"], done["output_tokens"]) == (1234, 567) and abs(done["cost_dollars"] - expected) < 1e-12
    # one successful read per job: the count stays flat over many more cycles (jobs interval 1 s)
    cycles = get(url, "bedrock_batch_exporter_cycles_total", namespace="bedrock:jobs") or 0
    wait_for(
        lambda: (get(url, "bedrock_batch_exporter_cycles_total", namespace="bedrock:jobs") or 0) >= cycles + 20, 40
    )
    assert get(url, "bedrock_batch_exporter_manifest_reads_total", outcome="ok") == 1.0
    assert get(url, "bedrock_batch_exporter_manifest_reads_total", outcome="not_found") is None


def test_a_missing_manifest_is_retried_with_backoff_then_counted_missing_never_zero(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    s3(fresh_aws).create_bucket(Bucket=BUCKET)
    arn = finished_job(fresh_aws, "nomanifest")
    old = finished_job(fresh_aws, "long-gone", ended=time.time() - 300)  # past the 1-minute give-up limit
    _, url = start_exporter(exporters, config(fresh_aws))
    wait_for(lambda: (get(url, "bedrock_batch_exporter_cycles_total", namespace="bedrock:jobs") or 0) >= 8, 30)
    reads = get(url, "bedrock_batch_exporter_manifest_reads_total", outcome="not_found") or 0
    cycles = get(url, "bedrock_batch_exporter_cycles_total", namespace="bedrock:jobs") or 0
    assert 2 <= reads < cycles  # retried, with backoff (1 s, 2 s, 4 s ...), not once per cycle
    assert get(url, "bedrock_batch_exporter_manifests_missing_total") == 1.0  # the one past the limit, once
    for job in (arn, old):
        assert get(url, "bedrock_batch_job_input_tokens", job_arn=job) is None  # never a made-up 0
        assert get(url, "bedrock_batch_job_cost_dollars", job_arn=job) is None
        assert get(url, "bedrock_batch_job_info", job_arn=job) == 1.0  # the job itself keeps flowing


def test_without_s3_get_object_jobs_and_metrics_keep_flowing_and_the_denial_is_counted(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    from tests.conftest import put_values
    from tests.integration.fault_proxy import FaultProxy, denied_manifests
    from tests.integration.test_jobs import recent

    proxy = FaultProxy(fresh_aws.url).start()
    try:
        s3(fresh_aws).create_bucket(Bucket=BUCKET)
        arn = finished_job(fresh_aws, "denied")
        running = fresh_aws.jobs.submit("running", MODEL, 100, "us-east-1")  # keeps CloudWatch polling on
        put_values(fresh_aws, {("NumberOfRecordsPendingProcessing", MODEL): 42.0}, when=recent())
        proxy.set(denied_manifests())
        _, url = start_exporter(exporters, config(fresh_aws).replace(fresh_aws.url, proxy.url))
        wait_for(lambda: (get(url, "bedrock_batch_exporter_manifest_reads_total", outcome="access_denied") or 0) >= 1)
        assert proxy.injected[("GetObject", "s3_denied")] >= 1
        assert get(url, "bedrock_batch_job_info", job_arn=arn) == 1.0
        assert get(url, "bedrock_batch_job_info", job_arn=str(running["jobArn"])) == 1.0
        wait_for(lambda: get(url, "aws_bedrock_batch_number_of_records_pending_processing_maximum") == 42.0)
        assert get(url, "bedrock_batch_exporter_up", namespace="bedrock:jobs") == 1.0
        assert get(url, "bedrock_batch_job_input_tokens", job_arn=arn) is None
    finally:
        proxy.stop()


def with_manifest(aws: SimulatedAws, name: str, tokens: int, tags: dict[str, str] | None = None) -> str:
    arn = finished_job(aws, name, tags=tags)
    manifest = {"inputTokenCount": tokens, "outputTokenCount": tokens // 2, "processedRecordCount": 100}
    key = f"out/{arn.rsplit('/', 1)[-1]}/manifest.json.out"
    s3(aws).put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())
    return arn


def cost_by_tag(url: str, key: str) -> dict[str, float]:
    return {
        dict(labels)["tag_value"]: value
        for (name, labels), value in scrape(url).items()
        if name == "bedrock_batch_finished_jobs_cost_by_tag_dollars" and dict(labels)["tag_key"] == key
    }


def test_cost_by_team_sums_to_the_whole_finished_job_cost(fresh_aws: SimulatedAws, exporters: list[Exporter]) -> None:
    s3(fresh_aws).create_bucket(Bucket=BUCKET)
    search = with_manifest(fresh_aws, "search-a", 1_000_000, {"team": "search", "cost-center": "42"})
    with_manifest(fresh_aws, "search-b", 3_000_000, {"team": "search"})
    ads = with_manifest(fresh_aws, "ads-a", 2_000_000, {"team": "ads", "owner": "not allow-listed"})
    with_manifest(fresh_aws, "untagged", 500_000)
    hostile = with_manifest(fresh_aws, "hostile", 700_000)
    fresh_aws.jobs.set_raw_tags(hostile, [{"key": "team", "value": '"} 1\nfake_metric{x="'}])  # AWS refuses such
    jobs = FAST_JOBS + ", read_manifests: true, tag_labels: [team, cost-center]"
    _, url = start_exporter(exporters, fast_config(fresh_aws.url, jobs=jobs))
    total = "bedrock_batch_finished_jobs_cost_dollars"
    costed = lambda: sum(1 for (n, _), _v in scrape(url).items() if n == "bedrock_batch_job_cost_dollars")  # noqa: E731
    wait_for(lambda: costed() == 5 and len(cost_by_tag(url, "team")) == 3, timeout=20)  # every manifest read
    by_team, whole = cost_by_tag(url, "team"), get(url, total) or 0.0
    price = lambda tokens: tokens / 1e6 * 0.8 * 0.5 + tokens // 2 / 1e6 * 3.2 * 0.5  # noqa: E731
    assert abs(by_team["search"] - price(1_000_000) - price(3_000_000)) < 1e-9
    assert abs(by_team["ads"] - price(2_000_000)) < 1e-9
    assert abs(by_team[""] - price(500_000) - price(700_000)) < 1e-9  # untagged, and the refused value
    assert (
        abs(sum(by_team.values()) - whole) < 1e-9 and abs(sum(cost_by_tag(url, "cost-center").values()) - whole) < 1e-9
    )
    assert get(url, "bedrock_batch_job_cost_dollars", job_arn=search, tag_team="search", tag_cost_center="42")
    assert get(url, "bedrock_batch_job_cost_dollars", job_arn=ads, tag_team="ads", tag_cost_center="") is not None
    assert get(url, "bedrock_batch_exporter_tag_values_dropped_total", reason="invalid") == 1.0
    requests = "bedrock_batch_exporter_aws_api_requests_total"
    assert get(url, requests, operation="ListTagsForResource", outcome="success") == 5.0  # once per job
    with urllib.request.urlopen(url + "/api/status", timeout=5) as response:
        finished = {j["job_name"]: j for j in json.loads(response.read())["finished_jobs"]["items"]}
    assert finished["search-a"]["tags"] == {"team": "search", "cost-center": "42"}
    assert finished["hostile"]["tags"] == {"team": "", "cost-center": ""}
    with urllib.request.urlopen(url + "/", timeout=5) as response:
        page = response.read().decode()
    assert "team=search" in page and "fake_metric" not in page


def test_without_list_tags_cost_still_flows_untagged_and_the_denial_is_counted(fresh_aws: SimulatedAws) -> None:
    from tests.integration.fault_proxy import Fault, FaultProxy

    s3(fresh_aws).create_bucket(Bucket=BUCKET)
    arn = with_manifest(fresh_aws, "denied", 1_000_000, {"team": "search"})
    proxy = FaultProxy(fresh_aws.url).start()
    proxy.set(Fault("access_denied", operation="ListTagsForResource"))
    jobs = FAST_JOBS + ", read_manifests: true, tag_labels: [team]"
    exporter = Exporter(load_config_text(fast_config(proxy.url, jobs=jobs), env={}))
    url = exporter.start("127.0.0.1:0")
    try:
        requests = "bedrock_batch_exporter_aws_api_requests_total"
        wait_for(lambda: get(url, requests, operation="ListTagsForResource", outcome="access_denied"), timeout=20)
        wait_for(lambda: get(url, "bedrock_batch_job_cost_dollars", job_arn=arn, tag_team="") is not None, timeout=20)
        assert cost_by_tag(url, "team") == {"": get(url, "bedrock_batch_finished_jobs_cost_dollars")}
        assert get(url, "bedrock_batch_exporter_up", namespace="bedrock:jobs") == 1.0
        proxy.clear()  # retried with backoff: the first retry comes a minute later, beyond this test
    finally:
        exporter.stop()
        proxy.stop()
