"""Job ETAs and model drain times from the job listing (exporter/eta.py), against worked examples."""

from __future__ import annotations

import pytest

from exporter.eta import MAX_JOBS_PER_MODEL, ProgressHistory, estimate
from exporter.families import job_samples
from exporter.model import Job, JobEta, TaskKey, TaskState


def job(arn: str, status: str, total: float, processed: float, submit: float = 0.0, model: str = "m") -> Job:
    end = 100.0 if status in ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired") else None
    return Job(arn, arn, model, status, "InvokeModel", submit, end, submit + 86400, total, processed, processed, 0)


def etas(jobs: list[Job], rates: dict[str, float]) -> dict[str, float]:
    return {e.arn: round(e.seconds, 6) for e in estimate(jobs, rates)[0]}


def test_one_running_job_finishes_when_its_records_left_are_done_at_the_models_rate() -> None:
    assert etas([job("a", "InProgress", 1000, 400)], {"a": 2.0}) == {"a": 300.0}


def test_fifo_is_inferred_when_the_oldest_job_takes_the_rate_and_the_next_one_waits_for_it() -> None:
    jobs = [job("old", "InProgress", 100, 0, submit=1), job("new", "InProgress", 100, 0, submit=2)]
    assert etas(jobs, {"old": 1.0, "new": 0.0}) == {"old": 100.0, "new": 200.0}


def test_shared_is_inferred_from_even_progress_and_jobs_leaving_pass_their_share_on() -> None:
    jobs = [job("small", "InProgress", 100, 50, submit=1), job("big", "InProgress", 300, 50, submit=2)]
    # 1 record/s each: small's 50 left take 50 s at 1/s; big then has 200 left at 2/s: 100 s more.
    assert etas(jobs, {"small": 1.0, "big": 1.0}) == {"small": 50.0, "big": 150.0}


def test_waiting_jobs_take_a_share_when_they_start_at_the_inferred_limit() -> None:
    jobs = [
        job("a", "InProgress", 100, 0, submit=1),
        job("b", "InProgress", 200, 0, submit=2),
        job("queued", "Scheduled", 100, 0, submit=3),
    ]
    # Limit 2 (a job waits): a ends at 100 s (1/s each); queued starts, b and queued at 1/s: b ends at 200 s.
    assert etas(jobs, {"a": 1.0, "b": 1.0}) == {"a": 100.0, "b": 200.0}


def test_no_eta_for_waiting_or_finished_jobs_nor_without_a_rate() -> None:
    jobs = [job("done", "Completed", 100, 100), job("queued", "Scheduled", 100, 0), job("run", "InProgress", 100, 10)]
    assert set(etas(jobs, {"done": 1.0})) == {"run"}
    assert etas(jobs, {}) == {}
    drains = estimate(jobs, {})[1]
    assert [(d.model_id, d.records_left, d.seconds) for d in drains] == [("m", 190.0, None)]


def test_a_models_drain_time_is_its_records_left_over_its_gross_rate() -> None:
    jobs = [job("a", "InProgress", 100, 40), job("b", "Scheduled", 60, 0), job("c", "Completed", 50, 50, model="x")]
    (drain,) = estimate(jobs, {"a": 2.0, "c": 5.0})[1]
    assert (drain.model_id, drain.records_left, drain.records_per_second, drain.seconds) == ("m", 120.0, 2.0, 60.0)


def test_history_rates_cover_the_window_and_count_jobs_that_finished_inside_it() -> None:
    history = ProgressHistory(window=60.0)
    history.observe(0.0, [job("a", "InProgress", 100, 0), job("b", "InProgress", 100, 90)])
    assert history.rates() == (0.0, {})  # one poll: no rate
    history.observe(10.0, [job("a", "InProgress", 100, 10), job("b", "Completed", 100, 100)])
    assert history.rates() == (10.0, {"a": 1.0, "b": 1.0})
    for t in (20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0):
        history.observe(t, [job("a", "InProgress", 1000, t)])
    span, rates = history.rates()
    assert span >= 60.0 and rates == {"a": 1.0}  # old polls dropped, one kept as the baseline


def test_a_repeated_or_earlier_poll_replaces_the_newest_instead_of_making_a_negative_span() -> None:
    history = ProgressHistory(window=60.0)
    history.observe(0.0, [job("a", "InProgress", 100, 0)])
    history.observe(10.0, [job("a", "InProgress", 100, 10)])
    history.observe(5.0, [job("a", "InProgress", 100, 20)])
    span, rates = history.rates()
    assert span == 5.0 and rates == {"a": 4.0}


@pytest.mark.parametrize("status", ["Completed", "Scheduled", "Stopping", "SomethingNew"])
def test_only_in_progress_jobs_get_an_eta_series(status: str) -> None:
    running, other = job("run", "InProgress", 100, 10), job("other", status, 100, 10)
    found, _ = estimate([running, other], {"run": 1.0, "other": 1.0})
    # Even an estimate naming another job (a stale one) is not exported unless that job is InProgress now.
    state = TaskState(
        TaskKey("t", "r", "bedrock:jobs"), "1", jobs=(running, other), job_eta=(*found, JobEta("other", 5.0))
    )
    names = {(s.family.name, dict(s.labels).get("job_arn")) for s in job_samples(state)}
    assert ("bedrock_batch_job_eta_seconds", "run") in names
    assert ("bedrock_batch_job_eta_seconds", "other") not in names


def test_a_hostile_number_of_jobs_in_one_model_is_bounded() -> None:
    jobs = [job(f"j{i:05d}", "InProgress", 10, 0, submit=i) for i in range(MAX_JOBS_PER_MODEL + 100)]
    found = etas(jobs, {j.arn: 1.0 for j in jobs})
    assert len(found) == MAX_JOBS_PER_MODEL
