"""Monitoring-account mode: one target reads its linked source accounts' series through CloudWatch cross-account
observability, each labelled with its owning account (fake: exporter.demo.linked)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from exporter.aws.cloudwatch import list_series, run_batch
from exporter.demo.server import SimulatedAws
from exporter.model import MissingData, ResolvedMetric, SeriesKey
from exporter.planner import plan
from tests.conftest import fast_config, put_as_role, put_values, run_cli, start_exporter, wait_for
from tests.integration.test_faults import SERIES, scrape

NS = "AWS/Bedrock/Batch"
METRIC = "NumberOfRecordsPendingProcessing"
# test fixture accounts: moto's default account is the monitoring account; two linked sources and one not linked
MONITORING = "123456789012"
SOURCES = {"111111111111": 2.0, "222222222222": 3.0}
UNLINKED = "333333333333"


def _role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/bedrock-batch-reader"


def _estate(aws: SimulatedAws, model: str = "m") -> None:
    """The monitoring account's own datapoint (1.0), each linked source's, and one of an account not linked (9.0)."""
    when = datetime.now(UTC) - timedelta(seconds=15)
    put_values(aws, {(METRIC, model): 1.0}, when=when)
    for account, value in SOURCES.items():
        aws.links.link(MONITORING, account)
        put_as_role(aws, _role(account), METRIC, model, value, when)
    put_as_role(aws, _role(UNLINKED), METRIC, model, 9.0, when)


def _linked_config(aws: SimulatedAws, linked: bool = True) -> str:
    target = (
        f"  - endpoint_url: {aws.url}\n    regions: [us-east-1]\n"
        f'    account_id: "{MONITORING}"\n    include_linked_accounts: {str(linked).lower()}\n'
    )
    return fast_config(aws.url, targets=target, jobs=None)


def _by_account(url: str) -> dict[str, float]:
    return {
        dict(labels)["account_id"]: value
        for (name, labels), value in scrape(url).items()
        if name == SERIES and dict(labels).get("dimension_ModelId") == "m"
    }


def test_two_linked_accounts_appear_with_their_own_account_id(fresh_aws: SimulatedAws, exporters: list[Any]) -> None:
    _estate(fresh_aws)
    _, url = start_exporter(exporters, _linked_config(fresh_aws))
    expected = {MONITORING: 1.0, **SOURCES}
    # The same ModelId in three accounts: only routing each query by its AccountId gives each its own value.
    wait_for(lambda: _by_account(url) == expected, timeout=20, what=f"series of {sorted(expected)}")


def test_without_the_flag_only_the_own_account_is_read(fresh_aws: SimulatedAws, exporters: list[Any]) -> None:
    _estate(fresh_aws)
    _, url = start_exporter(exporters, _linked_config(fresh_aws, linked=False))
    wait_for(lambda: _by_account(url) == {MONITORING: 1.0}, timeout=20, what="the monitoring account's own series")


def _client(aws: SimulatedAws) -> Any:
    return boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=aws.url)


def test_list_metrics_pages_keep_owning_accounts_one_to_one(fresh_aws: SimulatedAws) -> None:
    """600 models in a source account and one of its own: two pages, every metric with its owner."""
    when = datetime.now(UTC) - timedelta(seconds=15)
    fresh_aws.links.link(MONITORING, "111111111111")
    keys = boto3.client("sts", region_name="us-east-1", endpoint_url=fresh_aws.url).assume_role(
        RoleArn=_role("111111111111"), RoleSessionName="test"
    )["Credentials"]
    source = boto3.client(
        "cloudwatch",
        region_name="us-east-1",
        endpoint_url=fresh_aws.url,
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
    )
    data = [
        {"MetricName": METRIC, "Dimensions": [{"Name": "ModelId", "Value": f"m{i}"}], "Value": 1.0, "Timestamp": when}
        for i in range(600)
    ]
    for i in range(0, 600, 500):
        source.put_metric_data(Namespace=NS, MetricData=data[i : i + 500])
    put_values(fresh_aws, {(METRIC, "own"): 1.0}, when=when)
    client = _client(fresh_aws)
    first = client.list_metrics(Namespace=NS, IncludeLinkedAccounts=True)
    assert len(first["Metrics"]) == len(first["OwningAccounts"]) == 500
    assert "NextToken" in first
    found = list_series(client, NS, False, linked=True, own_account=MONITORING)
    accounts = {key.account for key in found}
    assert accounts == {"", "111111111111"}
    assert [k for k in found if k.account == ""] == [SeriesKey.of(NS, METRIC, {"ModelId": "own"})]
    assert len([k for k in found if k.account]) == 600
    # OwningAccount narrows the listing to one source account
    one = client.list_metrics(Namespace=NS, IncludeLinkedAccounts=True, OwningAccount="111111111111")
    assert set(one["OwningAccounts"]) == {"111111111111"}


def test_a_query_for_an_account_not_linked_gets_no_values(fresh_aws: SimulatedAws) -> None:
    _estate(fresh_aws)
    metric = ResolvedMetric(METRIC, ("Maximum",), 10, 120, 0, MissingData.NAN)
    series = [SeriesKey.of(NS, METRIC, {"ModelId": "m"}, account) for account in ("", "111111111111", UNLINKED)]
    (batch,) = plan(series, [metric], datetime.now(UTC).timestamp())
    answers = run_batch(_client(fresh_aws), batch)
    by_account = {q.series.account: answers[q.id] for q in batch.queries}
    own, linked, unlinked = by_account[""], by_account["111111111111"], by_account[UNLINKED]
    assert own.newest is not None and own.newest.value == 1.0
    assert linked.newest is not None and linked.newest.value == 2.0
    assert unlinked.status == "Forbidden" and unlinked.newest is None


@pytest.mark.parametrize("command", ["doctor", "plan"])
def test_doctor_and_plan_name_the_linked_accounts(fresh_aws: SimulatedAws, tmp_path: Path, command: str) -> None:
    _estate(fresh_aws)
    config = tmp_path / "config.yaml"
    config.write_text(_linked_config(fresh_aws))
    result = run_cli(command, "--config", str(config), "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    if command == "plan":
        (row,) = doc["namespaces"]
        assert row["linked_accounts"] == 2
        assert row["series"] == 3
        assert row["job_aware"] is False
    else:
        checks = [c for c in doc["checks"] if c["name"] == "linked accounts"]
        assert checks and "111111111111, 222222222222" in checks[0]["detail"]
