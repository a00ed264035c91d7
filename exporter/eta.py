"""When will a running job finish, and a model's backlog drain: estimated from what the job listing shows (pure).

AWS documents no scheduling: a Scheduled job starts "when it reaches its turn", and nothing says how a model's
throughput is shared among its running jobs. What the exporter does see, poll after poll, is each job's
`processedRecordCount`. From it (docs/insight.md):

- the model's gross rate R: records its jobs processed over the last `window` seconds (jobs that finished inside the
  window included), divided by the time covered; not the net change of the backlog, which new jobs offset;
- how R was shared: if the oldest running job took at least `FIFO_SHARE` of it while others ran, the model serves
  oldest first (`fifo`), else evenly (`shared`);
- the model's concurrency: while jobs wait in Scheduled, the jobs running now are its limit (a job waits only at the
  limit); with none waiting, no limit is assumed.

A job's ETA is then the time a forward run of that model reaches the job's end: R held constant, the inferred sharing,
the waiting jobs (Scheduled, then Submitted and Validating, in submission order) starting as slots free. A model's
drain time is its records left over R (both sharings use all of R, so the order does not change when the last record
is done). Only InProgress jobs get an ETA: a waiting job's start depends on a quota the listing does not show, and a
finished job has none. Without two polls in the window, or with R = 0, there is no number.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exporter.model import Job, JobEta, ModelDrain

FIFO_SHARE = 0.8  # the oldest running job's share of the model's rate above which the model is taken to be fifo
WAITING = ("Scheduled", "Validating", "Submitted")  # statuses that will start, in the order they are nearest to it
# A forward run costs O(jobs^2) per model; past this many jobs of one model the rest get no ETA (AWS's default
# concurrency quota is in the tens: a model with more running jobs is hostile or unusual input).
MAX_JOBS_PER_MODEL = 500


@dataclass(frozen=True, slots=True)
class _Poll:
    time: float
    processed: dict[str, float]  # job ARN -> records processed, for the jobs of interest at that poll


class ProgressHistory:
    """The recent polls' processed-record counts, kept for `window` seconds (one older poll kept as the baseline)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._polls: deque[_Poll] = deque()

    def observe(self, now: float, jobs: Iterable[Job]) -> None:
        """Remember this poll's counts of running jobs and of jobs that ended within the window."""
        counts = {
            job.arn: job.processed_records
            for job in jobs
            if job.processed_records is not None
            and (job.status == "InProgress" or (job.finished and (job.ended or 0.0) >= now - self.window))
        }
        if self._polls and now <= self._polls[-1].time:
            self._polls.pop()  # a clock step back or a repeated poll: the newer reading wins
        self._polls.append(_Poll(now, counts))
        while len(self._polls) > 2 and self._polls[1].time <= now - self.window:
            self._polls.popleft()

    def rates(self) -> tuple[float, dict[str, float]]:
        """(seconds covered, records per second per job ARN) between the oldest kept poll and the newest."""
        if len(self._polls) < 2:
            return 0.0, {}
        first, last = self._polls[0], self._polls[-1]
        span = last.time - first.time
        if span <= 0:
            return 0.0, {}
        # A job absent from the first poll started (or was first listed) since: it processed from 0, as far as known.
        return span, {arn: max(p - first.processed.get(arn, 0.0), 0.0) / span for arn, p in last.processed.items()}


def estimate(jobs: Sequence[Job], job_rates: dict[str, float]) -> tuple[tuple[JobEta, ...], tuple[ModelDrain, ...]]:
    """ETAs of the InProgress jobs and drain times of the models with records left (see the module text)."""
    by_model: dict[str, list[Job]] = {}
    for job in jobs:
        by_model.setdefault(job.model_id, []).append(job)
    etas: list[JobEta] = []
    drains: list[ModelDrain] = []
    for model, group in sorted(by_model.items()):
        rate = sum(job_rates.get(job.arn, 0.0) for job in group)
        unfinished = [j for j in group if not j.finished]
        left = sum(_left(j) for j in unfinished)
        if left > 0:
            drains.append(ModelDrain(model, left, rate, left / rate if rate > 0 else None))
        if rate > 0:
            etas.extend(_forward(unfinished[:MAX_JOBS_PER_MODEL], job_rates, rate))
    return tuple(sorted(etas, key=lambda e: e.arn)), tuple(drains)


def _left(job: Job) -> float:
    if job.total_records is None:
        return 0.0
    return max(job.total_records - (job.processed_records or 0.0), 0.0)


def _forward(jobs: list[Job], job_rates: dict[str, float], rate: float) -> list[JobEta]:
    """Run one model forward at `rate` until its InProgress jobs end; their times from now."""
    order = sorted(jobs, key=lambda j: (j.submit_time, j.arn))
    running = [j for j in order if j.status == "InProgress" and j.total_records is not None]
    if not running:
        return []
    waiting = sorted(
        (j for j in order if j.status in WAITING and j.total_records is not None),
        key=lambda j: (WAITING.index(j.status), j.submit_time, j.arn),
    )
    limit = len(running) if any(j.status == "Scheduled" for j in waiting) else len(running) + len(waiting)
    fifo = len(running) > 1 and job_rates.get(running[0].arn, 0.0) / rate >= FIFO_SHARE
    left = {j.arn: _left(j) for j in (*running, *waiting)}
    active = [j.arn for j in running]
    wanted = set(active)
    queue = deque(j.arn for j in waiting)
    ends: dict[str, float] = {}
    clock = 0.0
    while wanted - ends.keys():  # a running job leaves `active` only when it ends, so `active` is never empty here
        while queue and len(active) < limit:
            active.append(queue.popleft())
        shares = dict.fromkeys(active, 0.0 if fifo else rate / len(active))
        if fifo:
            shares[active[0]] = rate
        step = min(left[arn] / share for arn, share in shares.items() if share > 0)
        clock += step
        still = []
        for arn in active:
            left[arn] -= shares[arn] * step
            if left[arn] <= 1e-9:
                ends[arn] = clock
            else:
                still.append(arn)
        active = still
    return [JobEta(arn, ends[arn]) for arn in sorted(wanted) if arn in ends]
