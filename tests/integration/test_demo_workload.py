"""The demo's simulated workload: the CloudWatch backlog Bedrock would publish matches the jobs' own progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exporter.demo.jobs import NON_TERMINAL
from exporter.demo.server import SimulatedAws
from exporter.demo.workload import Workload, default_models
from tests.conftest import cloudwatch


def published(aws: SimulatedAws, region: str, model: str, metric: str, when: datetime) -> float | None:
    answer = cloudwatch(aws, region).get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Bedrock/Batch",
                        "MetricName": metric,
                        "Dimensions": [{"Name": "ModelId", "Value": model}],
                    },
                    "Period": 1,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=when - timedelta(seconds=1),
        EndTime=when + timedelta(seconds=1),
    )
    values = answer["MetricDataResults"][0]["Values"]
    return values[0] if values else None


def test_pending_records_equal_the_jobs_unprocessed_records(fresh_aws: SimulatedAws) -> None:
    models = default_models()
    clients = {region: cloudwatch(fresh_aws, region) for region in models}
    workload = Workload(clients, models, fresh_aws.jobs)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    statuses: set[str] = set()
    limits = {m.model_id: m.concurrency for ms in models.values() for m in ms}
    at_limit_with_queue = 0
    for step in range(150):
        when = start + timedelta(seconds=2 * step)
        workload.step(2.0, when)
        now = fresh_aws.jobs.all()
        statuses |= {j["status"] for j in now}
        for model_id, limit in limits.items():
            running = sum(1 for j in now if j["modelId"] == model_id and j["status"] == "InProgress")
            assert running <= limit, model_id
            waiting = sum(1 for j in now if j["modelId"] == model_id and j["status"] == "Scheduled")
            at_limit_with_queue += running == limit and waiting > 0
    jobs = fresh_aws.jobs.all()
    for region, region_models in models.items():
        for model in region_models:
            expected = sum(
                j["totalRecordCount"] - j["processedRecordCount"]
                for j in jobs
                if j["modelId"] == model.model_id and j["status"] in NON_TERMINAL
            )
            got = published(fresh_aws, region, model.model_id, "NumberOfRecordsPendingProcessing", when)
            assert got == expected, (model.model_id, got, expected)
            tokens = published(fresh_aws, region, model.model_id, "NumberOfTokensPendingProcessing", when)
            assert (tokens is not None) == model.anthropic
    for j in jobs:
        assert j["processedRecordCount"] == j["successRecordCount"] + j["errorRecordCount"] <= j["totalRecordCount"]
    # five minutes of simulated time: jobs queue (a model at its concurrency limit), run and finish
    assert {"Scheduled", "InProgress", "Completed"} <= statuses
    assert at_limit_with_queue > 10  # steps where a model was at its limit with jobs waiting in Scheduled


def test_old_datapoints_are_pruned(fresh_aws: SimulatedAws) -> None:
    from exporter.demo import _prune

    put = cloudwatch(fresh_aws).put_metric_data
    now = datetime.now(UTC)
    for age in (7200, 60):
        put(
            Namespace="AWS/Bedrock/Batch",
            MetricData=[{"MetricName": "M", "Value": 1.0, "Timestamp": now - timedelta(seconds=age)}],
        )
    _prune("us-east-1", now - timedelta(seconds=3600))
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.models import DEFAULT_ACCOUNT_ID

    left = cloudwatch_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].metric_data
    assert len(left) == 1
