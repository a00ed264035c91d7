"""`plan` against the simulated AWS: its per-cycle figures equal the calls one daemon cycle makes."""

from __future__ import annotations

import json
import math
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter import selfmetrics
from exporter.demo.server import SimulatedAws
from exporter.plan import HOURS_PER_MONTH, usage
from exporter.planner import window
from tests.conftest import put_values, run_cli, start_job

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
METRICS = (
    "NumberOfRecordsPendingProcessing",
    "NumberOfTokensPendingProcessing",
    "NumberOfInputTokensProcessedPerMinute",
    "NumberOfOutputTokensProcessedPerMinute",
)
REGIONS = ("us-east-1", "us-west-2")


def example_at(endpoint: str, tmp_path: Path) -> Path:
    """config.example.yaml with its target pointed at the simulated AWS and its commented Insights example on."""
    text, count = re.subn(r"# endpoint_url: \S+", f"endpoint_url: {endpoint}", EXAMPLE.read_text())
    assert count == 1, "config.example.yaml no longer has the commented endpoint_url line this test relies on"
    lines = text.splitlines()
    start = lines.index("    # insights:")
    end = start + 1
    while end < len(lines) and lines[end].startswith("    #  "):
        end += 1
    lines[start:end] = ["    " + line[len("    # ") :] for line in lines[start:end]]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def in_window() -> datetime:
    _, end = window(time.time(), 60, 300, 60)
    return datetime.fromtimestamp(end - 90, UTC)


def plan_json(*args: str) -> dict[str, Any]:
    result = run_cli("plan", *args, "--output", "json")
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def rows_in(doc: dict[str, Any], region: str) -> list[dict[str, Any]]:
    return [row for row in doc["namespaces"] if row["region"] == region]


def seed(aws: SimulatedAws, models: dict[str, int]) -> None:
    """`models[region]` models publishing all four Bedrock batch metrics in the current window."""
    for region, count in models.items():
        values = {(metric, f"model-{i:03d}"): float(i) for i in range(count) for metric in METRICS}
        put_values(aws, values, region=region, when=in_window())


def test_plan_per_cycle_figures_equal_one_daemon_cycle_at_full_activity(
    fresh_aws: SimulatedAws, tmp_path: Path
) -> None:
    # 200 models in us-east-1: 800 metrics -> 2 ListMetrics pages; 800 series x 2 statistics + 1 Insights query
    # = 1,601 queries -> 4 GetMetricData calls. 3 models in us-west-2: 1 page, 25 queries in 1 call.
    seed(fresh_aws, {"us-east-1": 200, "us-west-2": 3})
    for region in REGIONS:
        start_job(fresh_aws, region=region)  # an unfinished job in each region: full activity
    config = example_at(fresh_aws.url, tmp_path)
    fresh_aws.reset_counts()

    doc = plan_json("--config", str(config))
    assert doc["offline"] is False and doc["errors"] == 0
    assert fresh_aws.count("GetMetricData") == 0  # plan never requests metrics
    planned = {
        region: {
            "GetMetricData": sum(r["get_metric_data_calls_per_cycle"] for r in rows_in(doc, region)),
            "ListMetrics": sum(r["list_metrics_pages_per_refresh"] for r in rows_in(doc, region)),
            "ListModelInvocationJobs": sum(j["pages_per_cycle"] for j in doc["job_listings"] if j["region"] == region),
        }
        for region in REGIONS
    }
    assert planned["us-east-1"] == {"GetMetricData": 4, "ListMetrics": 2, "ListModelInvocationJobs": 1}
    assert planned["us-west-2"] == {"GetMetricData": 1, "ListMetrics": 1, "ListModelInvocationJobs": 1}
    east = rows_in(doc, "us-east-1")[0]
    assert east["series"] == 800 and east["queries_per_cycle"] == 1601 and east["insights_queries"] == 1
    assert rows_in(doc, "us-west-2")[0]["queries_per_cycle"] == 3 * 4 * 2 + 1
    assert doc["startup"]["get_caller_identity_calls"] == 1  # the example's target has no account_id

    fresh_aws.reset_counts()
    result = run_cli("once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    for region in REGIONS:
        served = {op: fresh_aws.count(op, region) for op in planned[region]}
        assert served == planned[region], region
    assert fresh_aws.count("GetCallerIdentity") == doc["startup"]["get_caller_identity_calls"]
    requested = re.findall(r'cloudwatch_metrics_requested_total\{[^}]*region="([^"]+)"\} (\S+)', result.stdout)
    assert {region: float(n) for region, n in requested} == {
        region: float(sum(r["queries_per_cycle"] for r in rows_in(doc, region))) for region in REGIONS
    }

    # hourly and monthly figures are derived from the per-cycle ones (docs/plan-and-doctor.md)
    full = east["full"]
    assert full["cycles_per_hour"] == 60
    assert full["get_metric_data_calls_per_hour"] == 4 * 60
    assert full["metrics_requested_per_hour"] == 1601 * 60
    assert full["list_metrics_requests_per_hour"] == 2 * 6  # a 10-minute discovery refresh
    expected = (1601 * 60 * selfmetrics.PRICE_PER_METRIC_REQUESTED + 12 * selfmetrics.PRICE_PER_REQUEST) * 730
    assert math.isclose(full["cost_per_month_dollars"], expected, rel_tol=1e-9)
    assert east["now"] == full  # a job is running: job-aware polling reads CloudWatch
    assert east["at_5m"]["metrics_requested_per_hour"] == 1601 * 12
    assert math.isclose(
        doc["totals"]["full"]["cost_per_month_dollars"],
        sum(r["full"]["cost_per_month_dollars"] for r in doc["namespaces"]),
        rel_tol=1e-9,
    )


def test_plan_follows_job_activity_now(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    seed(fresh_aws, {"us-east-1": 2, "us-west-2": 2})
    start_job(fresh_aws, region="us-east-1")  # none in us-west-2: polling pauses there
    config = example_at(fresh_aws.url, tmp_path)
    doc = plan_json("--config", str(config))
    east, west = rows_in(doc, "us-east-1")[0], rows_in(doc, "us-west-2")[0]
    assert east["unfinished_jobs"] == 1 and east["now"] == east["full"]
    assert west["unfinished_jobs"] == 0 and west["full"]["cost_per_month_dollars"] > 0
    assert west["now"]["cost_per_month_dollars"] == 0 and west["now"]["get_metric_data_calls_per_hour"] == 0
    # ... and the daemon agrees: no GetMetricData in the idle region
    fresh_aws.reset_counts()
    assert run_cli("once", "--config", str(config)).returncode == 0
    assert fresh_aws.count("GetMetricData", "us-west-2") == 0
    assert fresh_aws.count("GetMetricData", "us-east-1") == east["get_metric_data_calls_per_cycle"]
    text = run_cli("plan", "--config", str(config)).stdout
    assert "no unfinished job: paused" in text and "1 unfinished job(s): polled" in text


def test_offline_plan_makes_no_call_and_says_it_estimates(tmp_path: Path) -> None:
    config = example_at("http://127.0.0.1:9", tmp_path)  # nothing listens: any call would fail
    doc = plan_json("--config", str(config), "--offline", "--series-per-metric", "10")
    assert doc["offline"] is True and doc["errors"] == 0
    row = doc["namespaces"][0]
    assert row["series_source"] == "estimate" and row["series"] == 40
    assert row["queries_per_cycle"] == 81 and row["now"] is None and doc["totals"]["now"] is None
    text = run_cli("plan", "--config", str(config), "--offline").stdout
    assert text.startswith("OFFLINE ESTIMATE") and "unknown offline" in text


def test_a_failed_look_up_is_reported_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "aws: {max_attempts: 1, connect_timeout: 1s}\n"
        "targets: [{endpoint_url: 'http://127.0.0.1:9', regions: [us-east-1], account_id: '000000000000'}]\n"
    )
    result = run_cli("plan", "--config", str(config))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "ERROR" in result.stdout and "endpoint unreachable" in result.stdout


def test_usage_derivation() -> None:
    # polled every 60 s with a 10-minute refresh; a 90 s refresh checked every 60 s happens every 120 s
    got = usage(queries=100, calls=1, pages=2, refresh=90, polled_every=60)
    assert got.cycles_per_hour == 60 and got.metrics_requested_per_hour == 6000
    assert got.list_metrics_requests_per_hour == 2 * 3600 / 120
    cost = (6000 * selfmetrics.PRICE_PER_METRIC_REQUESTED + 60 * selfmetrics.PRICE_PER_REQUEST) * HOURS_PER_MONTH
    assert math.isclose(got.cost_per_month_dollars, cost, rel_tol=1e-9)
    assert usage(100, 1, 2, 600, None).cost_per_month_dollars == 0
