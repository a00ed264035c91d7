"""`once` against moto over HTTP: exact GetMetricData call counts and every value as CloudWatch holds it."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.server import SimulatedAws
from exporter.planner import window
from tests.conftest import put_values, run_cli, start_job

PENDING = "NumberOfRecordsPendingProcessing"
TOKENS = "NumberOfInputTokensProcessedPerMinute"


def in_window() -> datetime:
    """A timestamp inside the default window (period 60s, length 5m, delay 60s) for the next minute or so."""
    _, end = window(time.time(), 60, 300, 60)
    return datetime.fromtimestamp(end - 90, UTC)


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(body)
    return path


def parse(text: str) -> dict[tuple[str, str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("aws_"):
                out[(s.name, s.labels.get("dimension_ModelId", ""), s.labels["region"])] = s.value
    return out


def test_more_than_1000_queries_take_ceil_q_over_500_calls(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    models = [f"model-{i:03d}" for i in range(300)]
    values = {(PENDING, m): float(i) for i, m in enumerate(models)}
    values |= {(TOKENS, m): 1000.0 + i for i, m in enumerate(models)}
    put_values(fresh_aws, values, when=in_window())
    start_job(fresh_aws)  # an unfinished job: job-aware polling reads CloudWatch in this region
    fresh_aws.reset_counts()
    config = write_config(
        tmp_path,
        f"targets:\n  - endpoint_url: {fresh_aws.url}\n    regions: [us-east-1]\n",
    )
    result = run_cli("once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    # 600 series x 2 statistics = 1,200 queries -> ceil(1200 / 500) = 3 calls; 600 metrics -> 2 ListMetrics pages
    assert fresh_aws.count("GetMetricData") == 3
    assert fresh_aws.count("ListMetrics") == 2
    assert fresh_aws.count("GetCallerIdentity") == 1
    assert fresh_aws.count("ListModelInvocationJobs") == 1
    got = parse(result.stdout)
    for i, model in enumerate(models):
        for stat in ("maximum", "average"):
            assert got[(f"aws_bedrock_batch_number_of_records_pending_processing_{stat}", model, "us-east-1")] == i
        for stat in ("sum", "average"):
            assert (
                got[(f"aws_bedrock_batch_number_of_input_tokens_processed_per_minute_{stat}", model, "us-east-1")]
                == 1000 + i
            )
    # models publish no tokens-pending metric: nothing is invented for them
    assert not any("tokens_pending" in name for name, _, _ in got)
    assert len(got) == 1200
    assert (
        'bedrock_batch_exporter_cloudwatch_metrics_requested_total{account_id="123456789012",region="us-east-1"} '
        "1200.0" in result.stdout
    )


def test_missing_data_policies(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    old = datetime.fromtimestamp(time.time() - 7200, UTC)  # listed by ListMetrics, outside the 5m window
    put_values(fresh_aws, {("Zero", "m"): 5.0, ("Nan", "m"): 5.0, ("Drop", "m"): 5.0}, namespace="App", when=old)
    config = write_config(
        tmp_path,
        f"""
targets:
  - endpoint_url: {fresh_aws.url}
    regions: [us-east-1]
    account_id: "000000000000"
namespaces:
  - namespace: App
    metrics:
      - {{name: Zero, missing_data: zero}}
      - {{name: Nan, missing_data: nan}}
      - {{name: Drop, missing_data: drop}}
""",
    )
    result = run_cli("once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    got = parse(result.stdout)
    assert got[("aws_app_zero_average", "m", "us-east-1")] == 0.0
    assert math.isnan(got[("aws_app_nan_average", "m", "us-east-1")])
    assert ("aws_app_drop_average", "m", "us-east-1") not in got
    assert fresh_aws.count("GetCallerIdentity") == 0  # account_id given: no STS call


def test_static_dimensions_need_no_list_metrics(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    put_values(fresh_aws, {(PENDING, "a"): 7.0, (PENDING, "b"): 8.0}, region="eu-west-1", when=in_window())
    start_job(fresh_aws, region="eu-west-1")
    config = write_config(
        tmp_path,
        f"""
targets:
  - endpoint_url: {fresh_aws.url}
    regions: [eu-west-1]
    account_id: "000000000000"
namespaces:
  - namespace: AWS/Bedrock/Batch
    metrics: [{{name: {PENDING}, statistics: [Maximum]}}]
    discovery:
      mode: static
      static: [{{ModelId: a}}]
""",
    )
    result = run_cli("once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert parse(result.stdout) == {
        ("aws_bedrock_batch_number_of_records_pending_processing_maximum", "a", "eu-west-1"): 7.0
    }
    assert fresh_aws.count("ListMetrics") == 0
    assert fresh_aws.count("GetMetricData") == 1


def test_sdk_endpoint_environment_variables_work(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    put_values(fresh_aws, {(PENDING, "env-model"): 3.0}, when=in_window())
    config = write_config(tmp_path, 'targets:\n  - regions: [us-east-1]\n    account_id: "000000000000"\n')
    result = run_cli("once", "--config", str(config), env={"AWS_ENDPOINT_URL_CLOUDWATCH": fresh_aws.url})
    assert result.returncode == 0, result.stderr
    assert (
        parse(result.stdout)[
            ("aws_bedrock_batch_number_of_records_pending_processing_maximum", "env-model", "us-east-1")
        ]
        == 3.0
    )
    # the generic variable covers STS too
    config = write_config(tmp_path, "targets:\n  - regions: [us-east-1]\n")
    result = run_cli("once", "--config", str(config), env={"AWS_ENDPOINT_URL": fresh_aws.url})
    assert result.returncode == 0, result.stderr
    assert 'account_id="123456789012"' in result.stdout


def test_once_fails_with_exit_1_when_no_target_answers(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
aws: {max_attempts: 1, connect_timeout: 1s}
targets:
  - endpoint_url: http://127.0.0.1:9
    regions: [us-east-1]
    account_id: "000000000000"
""",
    )
    result = run_cli("once", "--config", str(config))
    assert result.returncode == 1
    assert "no target answered" in result.stderr
    assert "Traceback" not in result.stderr
    assert (
        'bedrock_batch_exporter_up{account_id="000000000000",namespace="AWS/Bedrock/Batch",region="us-east-1"} 0.0'
        in result.stdout
    )
