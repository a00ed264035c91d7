"""Bedrock batch jobs -> samples: jobs by status and model, per-job progress, finished-job counts (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from exporter.aws.bedrock import STATUSES, TERMINAL, Job
from exporter.config import PricingConfig
from exporter.snapshot import Sample

PREFIX = "bedrock_batch_job"


class JobTracker:
    """Remembers each job's last status, to count jobs entering a terminal status (once each)."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._status: dict[str, str] = {}
        self.finished: Counter[tuple[str, str]] = Counter()  # (model_id, status) -> jobs

    def observe(self, jobs: Iterable[Job]) -> None:
        seen = {}
        for job in jobs:
            before = self._status.get(job.arn)
            # A job first seen finished counts only if it ended while we were watching.
            watched = before is not None or (job.end_time is not None and job.end_time >= self._started)
            if job.finished and before not in TERMINAL and watched:
                self.finished[(job.model_id, job.status)] += 1
            seen[job.arn] = job.status
        self._status = seen


def retained(jobs: Iterable[Job], now: float, retention: float) -> list[Job]:
    """Unfinished jobs, and finished ones that ended less than `retention` ago."""
    return [j for j in jobs if not j.finished or (j.end_time or j.submit_time) >= now - retention]


def job_samples(jobs: Iterable[Job], account_id: str, region: str, tracker: JobTracker) -> list[Sample]:
    """Every job series for one region: counts by model and status (all statuses, 0 where none) and per job."""
    jobs = list(jobs)
    base = (("account_id", account_id), ("region", region))
    samples: list[Sample] = []
    counts = Counter((j.model_id, j.status) for j in jobs)
    for model in sorted({j.model_id for j in jobs} | {m for m, _ in tracker.finished}):
        for status in STATUSES:
            samples.append(
                Sample(
                    "bedrock_batch_jobs",
                    "Bedrock batch jobs by model and status (finished ones while retained).",
                    (*base, ("model_id", model), ("status", status)),
                    float(counts[(model, status)]),
                )
            )
    for (model, status), n in sorted(tracker.finished.items()):
        samples.append(
            Sample(
                "bedrock_batch_jobs_finished",
                "Jobs seen entering a terminal status since the exporter started.",
                (*base, ("model_id", model), ("status", status)),
                float(n),
                kind="counter",
            )
        )
    for job in sorted(jobs, key=lambda j: j.arn):
        labels = (*base, ("job_arn", job.arn), ("job_name", job.name), ("model_id", job.model_id))
        samples.append(
            Sample(
                f"{PREFIX}_info",
                "Bedrock batch job; always 1. Labels carry its status and invocation type.",
                (*labels, ("status", job.status), ("invocation_type", job.invocation_type)),
                1.0,
            )
        )
        values = (
            ("input_records", "Records in the job's input.", job.total_records),
            ("processed_records", "Records processed so far.", job.processed_records),
            ("succeeded_records", "Records processed successfully.", job.succeeded_records),
            ("failed_records", "Records that failed.", job.failed_records),
            ("submit_timestamp_seconds", "When the job was submitted (Unix time).", job.submit_time),
            ("expiration_timestamp_seconds", "When the job will time out (Unix time).", job.expiration_time),
            ("end_timestamp_seconds", "When the job ended (Unix time); finished jobs only.", job.end_time),
        )
        for suffix, doc, value in values:
            if value is not None:
                samples.append(Sample(f"{PREFIX}_{suffix}", doc, labels, value))
    return samples


def price_samples(pricing: PricingConfig) -> tuple[Sample, ...]:
    """Batch token prices per model, to join with the token-throughput series in PromQL."""
    samples = []
    for model, price in pricing.batch_prices().items():
        labels = (("model_id", model),)
        samples.append(
            Sample(
                "bedrock_batch_model_input_price_dollars_per_million_tokens",
                "Batch price of one million input tokens (from the exporter's price table; check AWS prices).",
                labels,
                price.input,
            )
        )
        samples.append(
            Sample(
                "bedrock_batch_model_output_price_dollars_per_million_tokens",
                "Batch price of one million output tokens (from the exporter's price table; check AWS prices).",
                labels,
                price.output,
            )
        )
    return tuple(samples)
