"""Bedrock batch jobs -> records: which jobs to keep, finished-job counts, prices (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from exporter.config import PricingConfig
from exporter.model import TERMINAL_STATUSES, Job, JobQueueWait, JobsFinished, Price
from exporter.pricing import with_aliases

# Statuses before InProgress (botocore's ModelInvocationJobStatus: Submitted, then Validating, then Scheduled, the
# queue); a job seen in one of them and later InProgress has waited at least until the last listing that saw it so.
WAITING_STATUSES = frozenset({"Submitted", "Validating", "Scheduled"})


class JobTracker:
    """Remembers each job's last status, to count jobs entering a terminal status (once each) and to measure how long
    jobs waited before InProgress."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._status: dict[str, str] = {}
        # ARN -> when a listing last saw the job waiting; the wait ends at the first listing that sees it InProgress.
        self._waiting_seen: dict[str, float] = {}
        self._entered: list[tuple[str, float]] = []  # (model_id, seconds waited, a lower bound) since the last take
        self._waited: dict[str, float] = {}  # ARN -> seconds waited, for jobs seen entering InProgress (once each)
        # Jobs already counted, by ARN: a job whose status flips back out of a terminal one (AWS has been seen
        # answering Completed -> InProgress -> Completed) is still one finished job. Pruned to the listed jobs.
        self._counted: set[str] = set()
        self.finished: Counter[tuple[str, str]] = Counter()  # (model_id, status) -> jobs

    def observe(self, jobs: Iterable[Job], now: float) -> None:
        seen = {}
        waiting: dict[str, float] = {}
        for job in jobs:
            if job.status in WAITING_STATUSES:
                waiting[job.arn] = now
            elif job.status == "InProgress" and job.arn in self._waiting_seen and job.arn not in self._waited:
                waited = max(0.0, self._waiting_seen[job.arn] - job.submit_time)
                self._entered.append((job.model_id, waited))
                self._waited[job.arn] = waited
            before = self._status.get(job.arn)
            # A job first seen finished counts only if it ended while we were watching (endTime, else the time it
            # was last modified: AWS marks endTime optional).
            ended = job.ended
            watched = before is not None or (ended is not None and ended >= self._started)
            if job.finished and before not in TERMINAL_STATUSES and watched and job.arn not in self._counted:
                self.finished[(job.model_id, job.status)] += 1
                self._counted.add(job.arn)
            seen[job.arn] = job.status
        self._status = seen
        self._counted.intersection_update(seen)
        self._waiting_seen = waiting  # a job that left waiting (or the listing) is forgotten
        self._waited = {arn: s for arn, s in self._waited.items() if arn in seen}

    def queue_waits(self, jobs: Iterable[Job]) -> tuple[JobQueueWait, ...]:
        """The waits of the InProgress jobs among `jobs` that were seen entering InProgress."""
        return tuple(
            JobQueueWait(j.arn, self._waited[j.arn]) for j in jobs if j.status == "InProgress" and j.arn in self._waited
        )

    def take_entered(self) -> list[tuple[str, float]]:
        """The jobs seen entering InProgress since the last call: (model_id, seconds waited at least)."""
        entered, self._entered = self._entered, []
        return entered

    def records(self) -> tuple[JobsFinished, ...]:
        return tuple(JobsFinished(model, status, n) for (model, status), n in sorted(self.finished.items()))


def retained(jobs: Iterable[Job], now: float, retention: float) -> list[Job]:
    """Unfinished jobs (any status outside the terminal set), and finished ones that ended less than `retention` ago."""
    return [j for j in jobs if not j.finished or (j.ended or j.submit_time) >= now - retention]


def within_budget(jobs: list[Job], budget: int) -> tuple[list[Job], int, int]:
    """At most `budget` jobs: the oldest finished ones go first, then the oldest unfinished; (kept, finished
    dropped, unfinished dropped)."""
    if len(jobs) <= budget:
        return jobs, 0, 0
    finished = sorted((j for j in jobs if j.finished), key=lambda j: j.ended or j.submit_time, reverse=True)
    running = sorted((j for j in jobs if not j.finished), key=lambda j: j.submit_time, reverse=True)
    keep_running = running[:budget]
    keep_finished = finished[: budget - len(keep_running)]
    return keep_running + keep_finished, len(finished) - len(keep_finished), len(running) - len(keep_running)


def prices(pricing: PricingConfig) -> tuple[Price, ...]:
    """Batch token prices per model (and per configured alias), to join with the token-throughput series."""
    table = (Price(model, p.input, p.output, p.source) for model, p in pricing.batch_prices().items())
    return with_aliases(table, pricing.aliases)
