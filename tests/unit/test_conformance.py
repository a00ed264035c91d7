"""The request-conformance harness (tests/conformance) catches what botocore's own validator lets through."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests import conformance

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def operation(service: str, name: str) -> Any:
    return botocore.session.get_session().get_service_model(service).operation_model(name)


def get_metric_data(**extra: Any) -> dict[str, Any]:
    return {
        "MetricDataQueries": [{"Id": "q0", "Expression": 'SELECT AVG(CPUUtilization) FROM "AWS/EC2"'}],
        "StartTime": NOW - timedelta(hours=1),
        "EndTime": NOW,
        **extra,
    }


def test_a_valid_request_has_no_problem() -> None:
    assert (
        conformance.check_request(
            operation("cloudwatch", "GetMetricData"), get_metric_data(ScanBy="TimestampDescending")
        )
        == []
    )


def test_an_over_long_expression_is_caught() -> None:
    params = get_metric_data()
    params["MetricDataQueries"][0]["Expression"] = "x" * 2049  # shape MetricExpression: max 2048
    problems = conformance.check_request(operation("cloudwatch", "GetMetricData"), params)
    assert problems == [("MetricDataQueries[0].Expression", "2049 characters, more than the maximum 2048")]


def test_an_out_of_enum_scan_by_is_caught() -> None:
    problems = conformance.check_request(operation("cloudwatch", "GetMetricData"), get_metric_data(ScanBy="Sideways"))
    assert [path for path, _ in problems] == ["ScanBy"] and "TimestampDescending" in problems[0][1]


def test_limits_patterns_ranges_and_unknown_members_are_caught() -> None:
    params = {"maxResults": 1001, "nameContains": "has space", "sortOrder": "Ascending", "bogus": 1}
    problems = dict(conformance.check_request(operation("bedrock", "ListModelInvocationJobs"), params))
    assert set(problems) == {"maxResults", "nameContains", "bogus"}, problems
    # shape Dimensions: max 30 (MetricDataQueries has no max in the model: its 500 lives in prose, see planner tests)
    dimensions = [{"Name": f"d{i}", "Value": "v"} for i in range(31)]
    metric = {"Namespace": "N", "MetricName": "M", "Dimensions": dimensions}
    query = {"Id": "q0", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Average"}}
    problems = dict(
        conformance.check_request(operation("cloudwatch", "GetMetricData"), get_metric_data(MetricDataQueries=[query]))
    )
    assert problems == {"MetricDataQueries[0].MetricStat.Metric.Dimensions": "31 items, more than the maximum 30"}


def test_the_hook_sees_requests_botocore_sends(aws: Any) -> None:
    """Through a real client (installed in conftest): botocore's validator lets an out-of-enum ScanBy through."""
    client = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=aws.url)
    with conformance.capture() as found:
        client.get_metric_data(**get_metric_data(ScanBy="Sideways"))  # moto answers; AWS would refuse
    assert [(v.operation, v.path) for v in found] == [("monitoring:GetMetricData", "ScanBy")]
    assert found[0].test.endswith("test_the_hook_sees_requests_botocore_sends")


def test_the_hook_checks_the_exporters_clients_too(aws: Any) -> None:
    """The exporter turns botocore's validation off; its requests are still checked."""
    from exporter.aws.session import AwsClients
    from exporter.config import AwsConfig, TargetConfig

    client = AwsClients(AwsConfig()).client(
        "cloudwatch", TargetConfig(regions=("us-east-1",), endpoint_url=aws.url, account_id="000000000000"), "us-east-1"
    )
    params = get_metric_data()
    params["MetricDataQueries"][0]["Expression"] = "x" * 2049
    with conformance.capture() as found, contextlib.suppress(ClientError):  # what moto answers does not matter
        client.get_metric_data(**params)
    assert [(v.path, v.problem) for v in found] == [
        ("MetricDataQueries[0].Expression", "2049 characters, more than the maximum 2048")
    ]


def test_requests_botocore_refuses_are_not_counted_as_sent(aws: Any) -> None:
    client = boto3.client("bedrock", region_name="us-east-1", endpoint_url=aws.url, config=Config())
    before = conformance.RECORD.refused["bedrock:ListModelInvocationJobs"]
    with conformance.capture() as found, pytest.raises(Exception, match="maxResults"):
        client.list_model_invocation_jobs(maxResults=0)  # below the minimum: botocore's ParamValidationError
    assert found == [] and conformance.RECORD.refused["bedrock:ListModelInvocationJobs"] == before + 1


def test_unicode_patterns_are_checked_with_the_regex_package() -> None:
    # `\p{L}` patterns (Python's `re` cannot compile them) are compiled by `regex`, so none is left unchecked
    assert conformance.uncompilable_patterns({"cloudwatch", "bedrock", "sts"}) == set()
    pattern = conformance._pattern("[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+")
    assert pattern is not None and pattern.fullmatch("héllo wörld") and not pattern.fullmatch("tab\there")


def test_queries_sent_as_json_text_are_checked_too() -> None:
    from botocore.session import get_session

    from exporter.planner import QueryList

    model = get_session().get_service_model("cloudwatch").operation_model("GetMetricData")
    text = '[{"Id": "q0", "Expression": "' + "x" * 2049 + '", "Period": 60}]'
    params = {"MetricDataQueries": QueryList((), text), "StartTime": 0, "EndTime": 60}
    with conformance.capture() as found:
        conformance._on_request(params, model)
    assert [v.path for v in found] == ["MetricDataQueries[0].Expression"]
