"""Quota headroom against the simulated AWS over HTTP (fake: exporter.demo.quotas), through real boto3 clients."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID

from exporter.aws import quotas as aws_quotas
from exporter.demo.quotas import CONCURRENT, LEGACY_NAME, quota_code
from exporter.demo.server import SimulatedAws
from exporter.quotas import QuotaReader
from tests.conftest import fast_config, start_exporter, wait_for
from tests.integration.fault_proxy import Fault, FaultProxy
from tests.integration.test_faults import get, proxy, scrape, start_behind_proxy  # noqa: F401 (proxy: a fixture)

LLAMA = "meta.llama3-1-70b-instruct-v1:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
QUOTA_OPERATIONS = ("ListAWSDefaultServiceQuotas", "ListServiceQuotas", "ListFoundationModels")


def client(url: str, service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", endpoint_url=url)


def at_limit(aws: SimulatedAws) -> None:
    """Llama's quota lowered to 2 (an applied value), both slots taken and one job waiting; a Haiku job running."""
    aws.quotas.apply(DEFAULT_ACCOUNT_ID, "us-east-1", "Llama 3.1 70B Instruct", 2.0)
    for name, status in (("a", "InProgress"), ("b", "InProgress"), ("c", "Scheduled"), ("d", "Validating")):
        job = aws.jobs.submit(f"llama-{name}", LLAMA, 100)
        aws.jobs.update(job["jobArn"], status=status)
    aws.jobs.update(aws.jobs.submit("haiku-a", HAIKU, 100)["jobArn"], status="InProgress")


def test_limit_use_and_waiting_jobs_per_model_on_metrics(fresh_aws: SimulatedAws, exporters: list[Any]) -> None:
    at_limit(fresh_aws)
    exporter, url = start_exporter(exporters, fast_config(fresh_aws.url))
    labels = {"account_id": "000000000000", "region": "us-east-1"}
    wait_for(lambda: get(url, "bedrock_batch_quota_waiting_jobs", model_id=LLAMA, **labels) == 1.0, timeout=20)
    found = scrape(url)

    def value(name: str, **more: str) -> float | None:
        wanted = {**labels, **more}
        hits = [v for (n, ls), v in found.items() if n == name and wanted.items() <= dict(ls).items()]
        return hits[0] if len(hits) == 1 else None

    limit = "bedrock_batch_quota_concurrent_jobs_limit"
    code = quota_code(CONCURRENT + "Llama 3.1 70B Instruct")
    assert value(limit, model_id=LLAMA, quota_code=code, source="applied") == 2.0
    assert value("bedrock_batch_quota_concurrent_jobs", model_id=LLAMA) == 2.0  # Validating asks for no slot yet
    assert value(limit, model_id=HAIKU, source="default") == 10.0
    assert value("bedrock_batch_quota_concurrent_jobs", model_id=HAIKU) == 1.0
    assert value("bedrock_batch_quota_waiting_jobs", model_id=HAIKU) == 0.0
    # every catalogue model has its quota, jobs or not; the legacy model's quota matches none and is counted
    assert len([1 for (n, _), _ in found.items() if n == limit]) == 6
    assert value("bedrock_batch_quota_unmatched") == 2.0  # its concurrent-job and records-per-job quotas
    records = "bedrock_batch_quota_records_per_job_limit"
    assert value(records, model_id=LLAMA, source="default") == 50_000.0
    assert len([1 for (n, _), _ in found.items() if n == records]) == 6
    status = _status(url)
    assert CONCURRENT + LEGACY_NAME in status["quotas_unmatched"]
    (llama,) = [q for q in status["quotas"] if q["model_id"] == LLAMA]
    assert llama == {
        "model_id": LLAMA,
        "quota_code": code,
        "limit": 2.0,
        "source": "applied",
        "in_use": 2,
        "waiting": 1,
    }
    # the hourly read's Service Quotas client is made for the read and not kept (~0.2 MB per target and region)
    kept = {key[0] for key in exporter.clients._clients}
    assert "service-quotas" not in kept and {"cloudwatch", "bedrock"} <= kept


def _status(url: str) -> dict[str, Any]:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "/api/status", timeout=5) as response:
        document = json.load(response)
    (task,) = [t for region in document["regions"]["items"] for t in region["tasks"] if t["quotas"]]
    return dict(task)


def test_quotas_are_read_over_every_page(fresh_aws: SimulatedAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_quotas, "PAGE_SIZE", 4)
    fresh_aws.quotas.apply(DEFAULT_ACCOUNT_ID, "us-east-1", "Nova Pro", 3.0)
    quotas = client(fresh_aws.url, "service-quotas")
    defaults = aws_quotas.list_quotas(quotas, applied=False)
    assert len({q.code for q in defaults}) == len(fresh_aws.quotas.names) == 21
    assert not any(q.applied for q in defaults) and {q.value for q in defaults} >= {10.0}
    (nova,) = aws_quotas.list_quotas(quotas, applied=True)
    assert (nova.code, nova.value, nova.applied) == (quota_code(CONCURRENT + "Nova Pro"), 3.0, True)
    assert fresh_aws.count("ListAWSDefaultServiceQuotas") == 6  # 21 quotas in pages of 4
    assert fresh_aws.count("ListServiceQuotas") == 1  # one applied value


def test_a_failed_read_keeps_the_last_quotas(fresh_aws: SimulatedAws, proxy: FaultProxy) -> None:  # noqa: F811
    reader = QuotaReader(refresh=60.0, model_map={})
    bad: list[str] = []
    quotas_client, bedrock = client(proxy.url, "service-quotas"), client(proxy.url, "bedrock")
    reader.refresh(0.0, lambda: quotas_client, bedrock, bad.append)
    first = reader.matched
    assert len(first.quotas) == len(first.records) == 6
    assert first.unmatched == ("Records per batch inference job for " + LEGACY_NAME, CONCURRENT + LEGACY_NAME)
    proxy.set(Fault("access_denied", operation="ListFoundationModels"))
    reader.refresh(60.0, lambda: quotas_client, bedrock, bad.append)
    assert reader.matched == first and proxy.injected[("ListFoundationModels", "access_denied")] == 1
    reader.refresh(61.0, lambda: quotas_client, bedrock, bad.append)  # not due again before the retry
    assert proxy.injected[("ListFoundationModels", "access_denied")] == 1
    proxy.set(Fault("malformed", operation="ListServiceQuotas"))
    reader.refresh(120.0, lambda: quotas_client, bedrock, bad.append)
    assert reader.matched == first and bad == ["ListServiceQuotas"]


@pytest.mark.parametrize("operation", QUOTA_OPERATIONS)
def test_a_denied_quota_read_leaves_jobs_flowing_and_is_counted(
    operation: str,
    fresh_aws: SimulatedAws,
    proxy: FaultProxy,  # noqa: F811
) -> None:
    at_limit(fresh_aws)
    proxy.set(Fault("access_denied", operation=operation))
    exporter, url = start_behind_proxy(proxy.url, jobs=True)
    try:
        requests = "bedrock_batch_exporter_aws_api_requests_total"
        wait_for(lambda: get(url, "bedrock_batch_jobs", model_id=LLAMA, status="InProgress") == 2.0, timeout=20)
        wait_for(lambda: get(url, requests, operation=operation, outcome="access_denied"), timeout=20)
        assert get(url, "bedrock_batch_exporter_up", namespace="bedrock:jobs") == 1.0
        assert get(url, "bedrock_batch_quota_concurrent_jobs_limit") is None  # never a number made up
    finally:
        exporter.stop()


def test_other_service_codes_go_to_moto_or_are_no_such_resource(fresh_aws: SimulatedAws) -> None:
    quotas = client(fresh_aws.url, "service-quotas")
    vpc = quotas.list_aws_default_service_quotas(ServiceCode="vpc")["Quotas"]  # moto's own defaults
    assert vpc and {q["ServiceCode"] for q in vpc} == {"vpc"}
    with pytest.raises(quotas.exceptions.NoSuchResourceException):
        quotas.list_service_quotas(ServiceCode="no-such-service")
    with pytest.raises(quotas.exceptions.InvalidPaginationTokenException):
        quotas.list_aws_default_service_quotas(ServiceCode="bedrock", NextToken="bm90LW91cnM=")
