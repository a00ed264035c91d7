"""A simulated Bedrock batch workload: jobs per model whose progress drives the CloudWatch metrics Bedrock publishes."""

from __future__ import annotations

import contextlib
import json
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID

from exporter.demo.jobs import MAX_EVENTS, NON_TERMINAL, TERMINAL, Job, JobSimulator, JobStore

NAMESPACE = "AWS/Bedrock/Batch"
OUTPUT_BUCKET = "bedrock-batch-demo-output"  # every simulated job writes its results under s3://OUTPUT_BUCKET/<prefix>/


@dataclass
class SimulatedModel:
    """One model's batch capacity: records per minute wander; jobs of a few thousand records arrive now and then."""

    model_id: str
    input_tokens_per_record: int
    output_tokens_per_record: int
    records_per_minute: float
    anthropic: bool = False
    job_prefix: str = "batch"
    rng: random.Random = field(default_factory=random.Random)
    jobs_submitted: int = 0
    concurrency: int = 10  # jobs InProgress at once (the per-model quota, docs/insight.md)
    backlog_minutes: float = 2.0  # new jobs arrive while fewer than this many minutes of records are pending
    waiting_target: int = 0  # new jobs also arrive while fewer than this many have not started (a queue kept full)
    team: str | None = None  # the `team` tag of its jobs (with `project`: the job prefix); None: untagged jobs

    def capacity(self, seconds: float) -> float:
        """Records this model can process in the next `seconds`."""
        self.records_per_minute = min(max(self.records_per_minute * self.rng.uniform(0.9, 1.1), 50.0), 5000.0)
        return self.records_per_minute * seconds / 60.0

    def datapoints(self, pending: float, rate: float, when: datetime) -> list[dict[str, Any]]:
        """The CloudWatch datapoints Bedrock would publish for this model at `when`."""
        dims = [{"Name": "ModelId", "Value": self.model_id}]
        jitter = self.rng.uniform(0.95, 1.05)
        values = {
            "NumberOfRecordsPendingProcessing": round(pending),
            "NumberOfInputTokensProcessedPerMinute": round(rate * self.input_tokens_per_record * jitter),
            "NumberOfOutputTokensProcessedPerMinute": round(rate * self.output_tokens_per_record * jitter),
        }
        if self.anthropic:
            values["NumberOfTokensPendingProcessing"] = round(
                pending * (self.input_tokens_per_record + self.output_tokens_per_record)
            )
        return [
            {"MetricName": name, "Dimensions": dims, "Value": float(value), "Timestamp": when, "Unit": "Count"}
            for name, value in values.items()
        ]


def default_models(seed: int = 7) -> dict[str, list[SimulatedModel]]:
    """The demo's models per region: an Anthropic model (with tokens pending) and others."""
    rng = random.Random(seed)

    def model(
        model_id: str, tin: int, tout: int, rpm: float, prefix: str, anthropic: bool = False, **more: Any
    ) -> SimulatedModel:
        return SimulatedModel(model_id, tin, tout, rpm, anthropic, prefix, rng=random.Random(rng.random()), **more)

    return {
        "us-east-1": [
            model(
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                900,
                300,
                800,
                "contract-review",
                anthropic=True,
                team="legal",
            ),
            model("amazon.nova-pro-v1:0", 600, 200, 1500, "catalog-enrich", team="commerce"),
            # Held at its concurrency limit (2, its quota) with jobs waiting in Scheduled: the demo's history starts two
            # long jobs on it (DemoWorld.history) and new jobs keep arriving behind them.
            model(
                "meta.llama3-1-70b-instruct-v1:0",
                700,
                250,
                600,
                "support-summaries",
                concurrency=2,
                backlog_minutes=12,
                waiting_target=2,
                team="support",
            ),
        ],
        "us-west-2": [
            model(
                "anthropic.claude-3-haiku-20240307-v1:0",
                500,
                150,
                2500,
                "ticket-triage",
                anthropic=True,
                team="support",
            ),
            model("amazon.titan-embed-text-v2:0", 300, 0, 4000, "doc-embeddings"),  # untagged jobs
        ],
    }


class Workload:
    """Submits jobs, lets the job simulator process them at each model's capacity, publishes matching metrics.

    NumberOfRecordsPendingProcessing of a model equals the records its unfinished jobs have not processed yet, so
    the job series and the CloudWatch series of the demo agree.
    """

    def __init__(
        self,
        cloudwatch: dict[str, Any],
        models: dict[str, list[SimulatedModel]],
        jobs: JobStore,
        seed: int = 11,
        s3: Any | None = None,
        policy: str = "fifo",
    ) -> None:
        self._cloudwatch = cloudwatch
        self._s3 = s3
        self._manifests: dict[str, float] = {}  # key written -> when its job ended (for prune)
        if s3 is not None:
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                s3.create_bucket(Bucket=OUTPUT_BUCKET)
        self.models = models
        self.jobs = jobs
        limits = {m.model_id: m.concurrency for ms in models.values() for m in ms}
        self.simulator = JobSimulator(
            jobs, seed, queue_seconds=(3.0, 15.0), failure_rate=0.08, concurrency=limits, policy=policy
        )
        # Ground truth per step and model: (time, model ID, records pending, records processed since the start).
        self.backlog: deque[tuple[float, str, float, float]] = deque(maxlen=MAX_EVENTS)
        self._processed: dict[str, float] = {}
        self.arrivals = True  # False: no new jobs (a scenario that lets the backlog drain)
        self.job_scale = 1  # new jobs' records are multiplied by this (a benchmark wants longer jobs than the demo)
        self._rng = random.Random(seed)
        self._region_of = {m.model_id: region for region, ms in models.items() for m in ms}
        self._model = {m.model_id: m for ms in models.values() for m in ms}

    def submit(self, model: SimulatedModel, now: float, records: int | None = None, timeout_hours: int = 72) -> None:
        model.jobs_submitted += 1
        self.jobs.submit(
            f"{model.job_prefix}-{model.jobs_submitted:04d}",
            model.model_id,
            records or self._rng.randint(4, 24) * 250 * self.job_scale,
            self._region_of[model.model_id],
            now=now,
            timeout_hours=timeout_hours,
            model_invocation_type=self._rng.choice(("InvokeModel", "Converse")),
            output_uri=f"s3://{OUTPUT_BUCKET}/{model.job_prefix}/" if self._s3 is not None else None,
            output_bucket_owner=DEFAULT_ACCOUNT_ID if self._s3 is not None else None,
            tags={"team": model.team, "project": model.job_prefix} if model.team else None,
        )

    def manifest(self, job: Job) -> dict[str, int] | None:
        """The `manifest.json.out` Bedrock would write for a finished job, or None when it processed nothing.

        Fields as the Bedrock user guide's "View the results of a batch inference job" lists them; tokens are the
        model's tokens per record times the records processed (input) or succeeded (output), the same per-record
        figures the simulated CloudWatch throughput is built from.
        """
        model = self._model.get(job["modelId"])
        if model is None or job["processedRecordCount"] <= 0:
            return None  # e.g. failed validation: AWS does not say a manifest exists, so the demo writes none
        return {
            "totalRecordCount": job["totalRecordCount"],
            "processedRecordCount": job["processedRecordCount"],
            "successRecordCount": job["successRecordCount"],
            "errorRecordCount": job["errorRecordCount"],
            "inputTokenCount": job["processedRecordCount"] * model.input_tokens_per_record,
            "outputTokenCount": job["successRecordCount"] * model.output_tokens_per_record,
        }

    def _write_manifest(self, job: Job) -> None:
        """Write a finished job's manifest at `<s3Uri>/<job ID>/manifest.json.out` (docs/job-cost.md's layout)."""
        body = self.manifest(job)
        if self._s3 is None or body is None:
            return
        uri = job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        key = f"{prefix.rstrip('/')}/{job['jobArn'].rsplit('/', 1)[-1]}/manifest.json.out".lstrip("/")
        self._s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode(), ContentType="application/json")
        self._manifests[key] = job["endTime"].timestamp() if "endTime" in job else 0.0

    def prune(self, ended_before: float) -> int:
        """Delete the manifests of jobs that ended before `ended_before` (long demos keep flat memory)."""
        gone = [key for key, ended in self._manifests.items() if ended < ended_before]
        for key in gone:
            if self._s3 is not None:
                self._s3.delete_object(Bucket=OUTPUT_BUCKET, Key=key)
            del self._manifests[key]
        return len(gone)

    def _by_model(self) -> dict[str, tuple[float, float]]:
        """Per model: (records not yet processed by unfinished jobs, records processed by all jobs)."""
        out: dict[str, tuple[float, float]] = {}
        for job in self.jobs.all():
            pending, processed = out.get(job["modelId"], (0.0, 0.0))
            if job["status"] in NON_TERMINAL:
                pending += job["totalRecordCount"] - job["processedRecordCount"]
            out[job["modelId"]] = (pending, processed + job["processedRecordCount"])
        return out

    def _not_started(self) -> dict[str, int]:
        """Per model: jobs submitted and not started yet (Submitted, Validating, Scheduled)."""
        out: dict[str, int] = {}
        for job in self.jobs.all():
            if job["status"] in ("Submitted", "Validating", "Scheduled"):
                out[job["modelId"]] = out.get(job["modelId"], 0) + 1
        return out

    def step(self, seconds: float, now: datetime | None = None) -> int:
        """Advance `seconds`: new jobs, processing, an occasional stop; publish metrics. Returns datapoints sent."""
        when = now or datetime.now(UTC)
        stamp = when.timestamp()
        before = self._by_model()
        waiting = self._not_started()
        capacity = {}
        for models in self.models.values():
            for model in models:
                pending = before.get(model.model_id, (0.0, 0.0))[0]
                if self.arrivals and (
                    pending < model.records_per_minute * model.backlog_minutes
                    or waiting.get(model.model_id, 0) < model.waiting_target
                    or self._rng.random() < 0.01
                ):
                    self.submit(model, stamp)
                capacity[model.model_id] = model.capacity(seconds)
        running = [j for j in self.jobs.all() if j["status"] == "InProgress"]
        if running and self._rng.random() < 0.004:
            self.simulator.stop(self._rng.choice(running)["jobArn"], stamp)
        for job in self.simulator.advance(stamp, capacity):
            if job["status"] in TERMINAL:
                self._write_manifest(job)
        after = self._by_model()
        sent = 0
        for region, models in self.models.items():
            data = []
            for model in models:
                pending, processed = after.get(model.model_id, (0.0, 0.0))
                done = max(processed - before.get(model.model_id, (0.0, 0.0))[1], 0.0)
                rate = done * 60.0 / seconds
                total = self._processed[model.model_id] = self._processed.get(model.model_id, 0.0) + done
                self.backlog.append((stamp, model.model_id, pending, total))
                if pending > 0 or rate > 0:  # like Bedrock: metrics exist only while there is batch activity
                    data.extend(model.datapoints(pending, rate, when))
            if data:
                self._cloudwatch[region].put_metric_data(Namespace=NAMESPACE, MetricData=data)
                sent += len(data)
        return sent
