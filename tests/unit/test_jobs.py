from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exporter.aws.bedrock import parse_job
from exporter.config import ModelPrice, PricingConfig
from exporter.families import Sample, job_samples, price_samples
from exporter.jobs import JobTracker, prices, retained
from exporter.model import KNOWN_STATUSES, Job, TaskKey, TaskState
from exporter.poller import in_shard


def samples_of(jobs: list[Job], tracker: JobTracker) -> list[Sample]:
    tracker.observe(jobs, now=0.0)
    state = TaskState(TaskKey("t", "r", "bedrock:jobs"), "1", jobs=tuple(jobs), jobs_finished=tracker.records())
    return list(job_samples(state))


def job(arn: str, status: str, model: str = "m", end: float | None = None, submit: float = 1000.0) -> Job:
    return Job(arn, f"name-{arn}", model, status, "InvokeModel", submit, end, submit + 86400, 100, 40, 38, 2)


def by_name(samples: list, name: str) -> dict:  # type: ignore[type-arg]
    return {
        dict(s.labels).get("status", dict(s.labels).get("job_arn")): s.value for s in samples if s.family.name == name
    }


def test_every_status_is_present_per_model() -> None:
    jobs = [job("a", "InProgress"), job("b", "InProgress"), job("c", "Failed", end=2000)]
    samples = samples_of(jobs, JobTracker(0))
    counts = by_name(samples, "bedrock_batch_jobs")
    assert set(counts) == set(KNOWN_STATUSES)
    assert counts["InProgress"] == 2 and counts["Failed"] == 1 and counts["Completed"] == 0


def test_an_unknown_status_is_exported_raw_and_counts_as_unfinished() -> None:
    jobs = [job("a", "Paused"), job("b", "Completed", end=2000)]
    samples = samples_of(jobs, JobTracker(0))
    counts = by_name(samples, "bedrock_batch_jobs")
    assert counts["Paused"] == 1 and set(counts) == {*KNOWN_STATUSES, "Paused"}
    assert not jobs[0].finished and not jobs[0].known_status
    assert [j.arn for j in retained(jobs, now=10**9, retention=60)] == ["a"]  # unfinished: never retired


def test_a_finished_job_without_end_time_uses_last_modified_time() -> None:
    tracker = JobTracker(started=5000.0)
    late = Job("x", "x", "m", "Completed", "", 1000.0, None, None, None, None, None, None, last_modified_time=6000.0)
    early = Job("y", "y", "m", "Failed", "", 1000.0, None, None, None, None, None, None, last_modified_time=10.0)
    tracker.observe([late, early], now=0.0)
    assert tracker.finished == {("m", "Completed"): 1}  # ended while watched; the other is history
    assert late.ended == 6000.0 and retained([late], now=6100.0, retention=200) == [late]


def test_per_job_series() -> None:
    samples = samples_of([job("a", "InProgress")], JobTracker(0))
    values = {s.family.name: s.value for s in samples if dict(s.labels).get("job_arn") == "a"}
    assert values == {
        "bedrock_batch_job_info": 1.0,
        "bedrock_batch_job_input_records": 100,
        "bedrock_batch_job_processed_records": 40,
        "bedrock_batch_job_succeeded_records": 38,
        "bedrock_batch_job_failed_records": 2,
        "bedrock_batch_job_submit_timestamp_seconds": 1000.0,
        "bedrock_batch_job_expiration_timestamp_seconds": 87400.0,
    }
    info = next(s for s in samples if s.family.name == "bedrock_batch_job_info")
    assert dict(info.labels)["status"] == "InProgress" and dict(info.labels)["job_name"] == "name-a"


def test_retention_drops_old_finished_jobs_only() -> None:
    jobs = [job("old", "Completed", end=100.0), job("new", "Completed", end=9000.0), job("run", "InProgress")]
    assert [j.arn for j in retained(jobs, now=10_000.0, retention=3600)] == ["new", "run"]


def test_finished_jobs_are_counted_once_when_seen_finishing() -> None:
    tracker = JobTracker(started=5000.0)
    tracker.observe([job("a", "InProgress"), job("history", "Completed", end=10.0)], now=0.0)
    assert not tracker.finished  # a job that ended before we started is history, not news
    tracker.observe([job("a", "Failed", end=6000.0), job("b", "Expired", end=6001.0)], now=0.0)
    tracker.observe([job("a", "Failed", end=6000.0), job("b", "Expired", end=6001.0)], now=0.0)
    assert tracker.finished == {("m", "Failed"): 1, ("m", "Expired"): 1}
    state = TaskState(TaskKey("t", "r", "bedrock:jobs"), "1", jobs_finished=tracker.records())
    counter = [s for s in job_samples(state) if s.family.name == "bedrock_batch_jobs_finished"]
    assert {dict(s.labels)["status"]: (s.value, s.family.kind) for s in counter} == {
        "Failed": (1.0, "counter"),
        "Expired": (1.0, "counter"),
    }


@pytest.mark.parametrize(
    "summary",
    [
        {},
        {"jobArn": "a", "modelId": "m", "status": "Dancing", "submitTime": None},
        {"jobArn": "a", "modelId": "m", "status": "Completed", "submitTime": "yesterday"},
        {"jobArn": "a", "modelId": "m", "status": "Completed", "submitTime": None},
        {"jobArn": "a", "modelId": "m", "status": 7, "submitTime": datetime(2026, 1, 1, tzinfo=UTC)},
        {"jobArn": "a", "status": "Completed", "submitTime": datetime(2026, 1, 1, tzinfo=UTC)},
        "not an object",
    ],
)
def test_summaries_without_required_members_are_skipped(summary: dict) -> None:  # type: ignore[type-arg]
    assert parse_job(summary) is None


def test_unknown_status_and_broken_optional_members_never_hide_a_job() -> None:
    job = parse_job(
        {
            "jobArn": "a",
            "modelId": "m",
            "status": "Paused",
            "submitTime": datetime(2026, 1, 1, tzinfo=UTC),
            "endTime": "not a time",
            "totalRecordCount": -5,
            "processedRecordCount": float("inf"),
            "modelInvocationType": 42,
        }
    )
    assert job is not None and job.status == "Paused" and not job.finished
    assert job.end_time is None and job.total_records is None and job.processed_records is None
    assert job.invocation_type == ""


def test_batch_prices_apply_the_discount_and_overrides() -> None:
    pricing = PricingConfig(batch_discount=0.5, models={"x": ModelPrice(input=2.0, output=8.0)})
    table = pricing.batch_prices()
    assert table["x"] == ModelPrice(input=1.0, output=4.0)
    shipped = table["anthropic.claude-3-5-sonnet-20240620-v1:0"]
    assert (shipped.input, shipped.output) == (1.5, 7.5) and shipped.source and "checked" in shipped.source
    only = PricingConfig(include_defaults=False, models={"x": ModelPrice(input=2.0, output=8.0)})
    names = {(s.family.name, dict(s.labels)["model_id"]) for s in price_samples(prices(only))}
    assert names == {
        ("bedrock_batch_model_input_price_dollars_per_million_tokens", "x"),
        ("bedrock_batch_model_output_price_dollars_per_million_tokens", "x"),
    }


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_cover_every_target_region_exactly_once(count: int) -> None:
    pairs = [(f"t{t}", r) for t in range(12) for r in ("us-east-1", "us-west-2", "eu-west-1", "ap-south-1")]
    owners = {p: [i for i in range(count) if in_shard(*p, i, count)] for p in pairs}
    assert all(len(o) == 1 for o in owners.values())
    if count > 1:  # and the split is not degenerate
        assert len({o[0] for o in owners.values()}) == count


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        ("x", "x"),
        ("us.x.y-v1:0", "x.y-v1:0"),  # a cross-region inference profile: any geography prefix
        ("apac.x.y-v1:0", "x.y-v1:0"),
        ("arn:aws:bedrock:us-east-1::foundation-model/x.y-v1:0", "x.y-v1:0"),
        ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.x.y-v1:0", "x.y-v1:0"),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc", "x.y-v1:0"),  # by alias
        ("unknown.model", None),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/zzz", None),
    ],
)
def test_model_ids_as_accounts_see_them_resolve_to_a_price(seen: str, expected: str | None) -> None:
    from exporter.pricing import resolve

    pricing = PricingConfig(
        include_defaults=False,
        models={"x": ModelPrice(input=2.0, output=8.0), "x.y-v1:0": ModelPrice(input=4.0, output=4.0)},
        aliases={"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc": "us.x.y-v1:0"},
    )
    table = {p.model_id: p for p in prices(pricing)}
    found = resolve(seen, table)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.model_id == seen  # labelled as reported, so PromQL joins work
        assert (found.input, found.output) == (table[expected].input, table[expected].output)


def test_price_series_carry_the_ids_as_reported() -> None:
    pricing = PricingConfig(include_defaults=False, models={"a.b-v1:0": ModelPrice(input=2.0, output=8.0)})
    seen = {"us.a.b-v1:0", "nothing.known"}
    labels = {dict(s.labels)["model_id"] for s in price_samples(prices(pricing), seen)}
    assert labels == {"a.b-v1:0", "us.a.b-v1:0"}


def _job_in(status: str, arn: str = "arn:j1", submitted: float = 0.0) -> Job:
    return Job(arn, "n", "m", status, "InvokeModel", submitted, None, None, None, None, None, None)


def test_queue_wait_is_measured_only_for_jobs_seen_waiting_and_as_a_lower_bound() -> None:
    tracker = JobTracker(started=0.0)
    tracker.observe([_job_in("Submitted"), _job_in("InProgress", "arn:running")], now=100.0)
    tracker.observe([_job_in("Scheduled"), _job_in("InProgress", "arn:running")], now=160.0)
    assert tracker.take_entered() == []  # still waiting; the running one was never seen waiting
    tracker.observe([_job_in("InProgress")], now=220.0)
    assert tracker.take_entered() == [("m", 160.0)]  # the last listing that saw it waiting: at least 160 s
    assert tracker.take_entered() == []  # taken once
    tracker.observe([_job_in("Scheduled")], now=280.0)  # AWS flips it back: it entered once already
    tracker.observe([_job_in("InProgress")], now=340.0)
    assert tracker.take_entered() == []
    assert [(w.arn, w.seconds) for w in tracker.queue_waits([_job_in("InProgress")])] == [("arn:j1", 160.0)]
    assert tracker.queue_waits([_job_in("InProgress", "arn:running")]) == ()
    tracker.observe([_job_in("Scheduled", "arn:j2", submitted=300.0)], now=400.0)
    tracker.observe([], now=460.0)  # missing from a listing: forgotten, no wait is made up
    tracker.observe([_job_in("InProgress", "arn:j2", submitted=300.0)], now=520.0)
    assert tracker.take_entered() == []
