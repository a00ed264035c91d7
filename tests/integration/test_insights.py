"""Metrics Insights against the simulated AWS over HTTP: one labelled series per group, calls counted server-side."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

import exporter.demo.server
from exporter.demo.server import SimulatedAws
from tests.conftest import cloudwatch, put_values, run_cli, start_job
from tests.integration.test_once import PENDING, in_window, write_config

ROOT = Path(__file__).resolve().parents[2]


def example_query() -> dict[str, Any]:
    """The Insights query config.example.yaml shows, commented out, under AWS/Bedrock/Batch (uncommented here)."""
    lines = (ROOT / "config.example.yaml").read_text().splitlines()
    start = lines.index("    # insights:")
    block = []
    for line in lines[start:]:
        if not line.startswith("    # ") or (block and not line.startswith("    #  ")):
            break
        block.append("    " + line[len("    # ") :])
    item: dict[str, Any] = yaml.safe_load("\n".join(block))["insights"][0]
    return item


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def config(aws: SimulatedAws, insights: list[dict[str, Any]], metrics: list[dict[str, Any]] | None = None) -> str:
    body = {
        "targets": [{"endpoint_url": aws.url, "regions": ["us-east-1"], "account_id": "123456789012"}],
        "namespaces": [{"namespace": "AWS/Bedrock/Batch", "insights": insights, "metrics": metrics or []}],
    }
    return yaml.safe_dump(body, sort_keys=False)


def test_example_query_gives_one_series_per_group(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    item = example_query()
    put_values(fresh_aws, {(PENDING, "model-a"): 4.0, (PENDING, "model-b"): 9.0}, when=in_window())
    put_values(fresh_aws, {(PENDING, "model-a"): 6.0}, when=in_window())  # AVG of 4 and 6
    put_values(fresh_aws, {(PENDING, "model-c"): 1.0}, region="us-west-2", when=in_window())  # another region
    start_job(fresh_aws)
    fresh_aws.reset_counts()
    path = write_config(tmp_path, config(fresh_aws, [item]))
    result = run_cli("once", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert series(result.stdout, item["name"]) == {
        (("account_id", "123456789012"), ("dimension_ModelId", "model-a"), ("region", "us-east-1")): 5.0,
        (("account_id", "123456789012"), ("dimension_ModelId", "model-b"), ("region", "us-east-1")): 9.0,
    }
    assert fresh_aws.count("GetMetricData") == 1
    assert fresh_aws.count("ListMetrics") == 0  # Insights alone needs no discovery
    assert not any(line.startswith("aws_bedrock_batch_") for line in result.stdout.splitlines())


def test_insights_share_calls_with_metric_queries_within_the_limits(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    models = [f"model-{i:03d}" for i in range(250)]
    put_values(fresh_aws, {(PENDING, m): float(i) for i, m in enumerate(models)}, when=in_window())
    start_job(fresh_aws)
    fresh_aws.reset_counts()
    item = example_query()
    metrics = [{"name": PENDING, "statistics": ["Maximum", "Average"]}]
    path = write_config(tmp_path, config(fresh_aws, [item], metrics))
    result = run_cli("once", "--config", str(path))
    assert result.returncode == 0, result.stderr
    # 250 series x 2 statistics + 1 Insights query = 501 queries -> 2 calls
    assert fresh_aws.count("GetMetricData") == 2
    got = series(result.stdout, item["name"])
    assert len(got) == 250
    assert {dict(labels)["dimension_ModelId"]: v for labels, v in got.items()} == {
        m: float(i) for i, m in enumerate(models)
    }
    maxima = series(result.stdout, "aws_bedrock_batch_number_of_records_pending_processing_maximum")
    assert len(maxima) == 250


def test_one_insights_query_per_call(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    put_values(fresh_aws, {(PENDING, "a"): 2.0, (PENDING, "b"): 3.0}, when=in_window())
    start_job(fresh_aws)
    fresh_aws.reset_counts()
    base = 'FROM SCHEMA("AWS/Bedrock/Batch", ModelId)'
    queries = [
        {"name": "pending_max", "query": f"SELECT MAX({PENDING}) {base} GROUP BY ModelId"},
        {"name": "pending_sum", "query": f"SELECT SUM({PENDING}) {base}"},
        {"name": "pending_top", "query": f"SELECT MAX({PENDING}) {base} GROUP BY ModelId ORDER BY MAX() DESC LIMIT 1"},
    ]
    path = write_config(tmp_path, config(fresh_aws, queries))
    result = run_cli("once", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert fresh_aws.count("GetMetricData") == 3
    assert sorted(series(result.stdout, "pending_max").values()) == [2.0, 3.0]
    assert list(series(result.stdout, "pending_sum").values()) == [5.0]
    (labels,) = series(result.stdout, "pending_top")
    assert dict(labels)["dimension_ModelId"] == "b"


def test_insights_pause_with_the_bedrock_metrics(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    put_values(fresh_aws, {(PENDING, "a"): 2.0}, when=in_window())  # data, but no unfinished job
    fresh_aws.reset_counts()
    path = write_config(tmp_path, config(fresh_aws, [example_query()]))
    result = run_cli("once", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert fresh_aws.count("ListModelInvocationJobs") == 1
    assert fresh_aws.count("GetMetricData") == 0


def test_the_test_aws_refuses_two_insights_queries_in_one_call(fresh_aws: SimulatedAws) -> None:
    client = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=fresh_aws.url)
    query = f'SELECT AVG({PENDING}) FROM "AWS/Bedrock/Batch"'
    window = in_window()
    with pytest.raises(ClientError, match="only one Metrics Insights query"):
        client.get_metric_data(
            MetricDataQueries=[{"Id": f"i{i}", "Expression": query, "Period": 60} for i in range(2)],
            StartTime=window.replace(minute=0),
            EndTime=window,
        )


RESERVED_QUERY = 'SELECT SUM("Count") FROM "Custom/App" GROUP BY "Operation"'
RAW_QUERY = 'SELECT SUM(Count) FROM "Custom/App" GROUP BY Operation'  # Count and Operation are reserved words


def _put_counts(aws: SimulatedAws, values: dict[str, float], when: datetime) -> None:
    cloudwatch(aws, "us-east-1").put_metric_data(
        Namespace="Custom/App",
        MetricData=[
            {
                "MetricName": "Count",
                "Dimensions": [{"Name": "Operation", "Value": op}],
                "Value": v,
                "Timestamp": when,
            }
            for op, v in values.items()
        ],
    )


def test_reserved_words_reach_the_simulated_aws_double_quoted(
    fresh_aws: SimulatedAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[str] = []
    answer = exporter.demo.server.insights_answer

    def recording(environ: dict[str, Any], start_response: Any, moto: Any, data: Callable[[], Iterable[Any]]) -> Any:
        """Keep the Expression of every query the server received, then answer as before."""
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(raw)
        if raw.startswith(b"{"):
            received.extend(q.get("Expression", "") for q in json.loads(raw).get("MetricDataQueries", []))
        return answer(environ, start_response, moto, data)

    monkeypatch.setattr(exporter.demo.server, "insights_answer", recording)
    when = in_window()
    _put_counts(fresh_aws, {"Get": 3.0, "Put": 4.0}, when)
    _put_counts(fresh_aws, {"Get": 5.0}, when)
    body = {
        "targets": [{"endpoint_url": fresh_aws.url, "regions": ["us-east-1"], "account_id": "123456789012"}],
        "namespaces": [
            {
                "namespace": "Custom/App",
                "metrics": [],
                "insights": [
                    {"name": "app_count_by_operation", "query": RESERVED_QUERY},
                    {"name": "app_count_by_operation_unquoted", "query": RAW_QUERY},  # as AWS would refuse it
                ],
            }
        ],
    }
    result = run_cli("once", "--config", str(write_config(tmp_path, yaml.safe_dump(body, sort_keys=False))))
    assert result.returncode == 0, result.stderr
    assert received == [RESERVED_QUERY, RESERVED_QUERY]  # one Insights query per call
    for name in ("app_count_by_operation", "app_count_by_operation_unquoted"):
        assert series(result.stdout, name) == {
            (("account_id", "123456789012"), ("dimension_Operation", "Get"), ("region", "us-east-1")): 8.0,
            (("account_id", "123456789012"), ("dimension_Operation", "Put"), ("region", "us-east-1")): 4.0,
        }


def test_the_simulated_aws_refuses_an_unquoted_reserved_word(fresh_aws: SimulatedAws) -> None:
    window = in_window()
    _put_counts(fresh_aws, {"Get": 3.0}, window)
    client = cloudwatch(fresh_aws, "us-east-1")
    request = {"StartTime": window - timedelta(minutes=10), "EndTime": window + timedelta(minutes=10)}
    with pytest.raises(ClientError) as info:
        client.get_metric_data(MetricDataQueries=[{"Id": "q", "Expression": RAW_QUERY, "Period": 60}], **request)
    assert info.value.response["Error"]["Code"] == "ValidationError"
    assert "Reserved keyword 'Count' must be surrounded by double quotes" in info.value.response["Error"]["Message"]
    answer = client.get_metric_data(
        MetricDataQueries=[{"Id": "q", "Expression": RESERVED_QUERY, "Period": 60}], **request
    )
    assert [(r["Label"], r["Values"]) for r in answer["MetricDataResults"]] == [("Get", [3.0])]
