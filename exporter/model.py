"""Typed records and the domain types every step shares: what the Snapshot holds and each sink names for itself.

Nothing here knows an output format: Prometheus names live in `sinks/prometheus` (via `exporter.families`),
OpenTelemetry names in `sinks/otlp`, and the status page reads these fields directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import NamedTuple

BEDROCK_BATCH_NAMESPACE = "AWS/Bedrock/Batch"


class MissingData(StrEnum):
    """What a series shows when CloudWatch answers `Complete` with no datapoint in the window."""

    NAN = "nan"
    ZERO = "zero"
    DROP = "drop"

    def fill(self) -> float | None:
        """The declared value for a Complete result without a datapoint; None means the series is not exported."""
        return _FILL[self.value]


_FILL: dict[str, float | None] = {"nan": math.nan, "zero": 0.0, "drop": None}


# Records held by the thousand are NamedTuples, not dataclasses: smaller, and quicker to make. (An earlier note here
# said they are untracked by the cyclic garbage collector: they are not. CPython untracks only exact tuples, never a
# subclass, so every record is walked by each collection that sees it; while serving, collections run on a schedule
# instead: exporter.gcschedule, docs/performance.md.)
class SeriesKey(NamedTuple):
    """One CloudWatch metric with one dimension set (dimensions sorted by name).

    `account` is the owning account of a series a monitoring account reads from a linked source account
    (ListMetrics' `OwningAccounts`; its queries carry it as `AccountId`); empty for the task's own account.
    """

    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    account: str = ""

    @classmethod
    def of(cls, namespace: str, metric: str, dimensions: Mapping[str, str], account: str = "") -> SeriesKey:
        return cls(namespace, metric, tuple(sorted(dimensions.items())), account)


@dataclass(frozen=True)
class ResolvedMetric:
    """A metric with every setting filled in from its namespace and the defaults."""

    name: str
    statistics: tuple[str, ...]
    period: int
    length: int
    delay: int
    missing_data: MissingData


@dataclass(frozen=True)
class ResolvedInsights:
    """An Insights query with its window filled in from its namespace."""

    name: str
    expression: str
    group_by: tuple[str, ...]
    period: int
    length: int
    delay: int
    missing_data: MissingData  # what a group seen before shows when this window holds no datapoint for it


# Job statuses as botocore's `ModelInvocationJobStatus` lists them today. AWS adds statuses: only the terminal set
# decides anything (a status outside it counts as unfinished, so job-aware polling keeps CloudWatch polling on).
NON_TERMINAL_STATUSES = ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")
TERMINAL_STATUSES = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
KNOWN_STATUSES = NON_TERMINAL_STATUSES + TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class Job:
    """The parts of a ModelInvocationJobSummary the exporter uses; times are epoch seconds, counts may be absent."""

    arn: str
    name: str
    model_id: str
    status: str  # raw, as AWS sent it: may be a status the SDK does not list yet
    invocation_type: str
    submit_time: float
    end_time: float | None
    expiration_time: float | None
    total_records: float | None
    processed_records: float | None
    succeeded_records: float | None
    failed_records: float | None
    last_modified_time: float | None = None
    output_s3_uri: str | None = None  # outputDataConfig.s3OutputDataConfig.s3Uri
    output_bucket_owner: str | None = None  # outputDataConfig.s3OutputDataConfig.s3BucketOwner
    # For failure diagnostics (status page and /api/status only; exporter.failures classifies the message)
    message: str | None = None  # `message`: at most MESSAGE_MAX characters kept; botocore marks it sensitive
    role_arn: str | None = None  # `roleArn`
    input_s3_uri: str | None = None  # inputDataConfig.s3InputDataConfig.s3Uri
    kms_key_id: str | None = None  # outputDataConfig.s3OutputDataConfig.s3EncryptionKeyId
    subnet_ids: tuple[str, ...] = ()  # vpcConfig.subnetIds
    security_group_ids: tuple[str, ...] = ()  # vpcConfig.securityGroupIds

    @property
    def job_id(self) -> str:
        """The last part of the job ARN (Bedrock names the job's output folder after it)."""
        return self.arn.rsplit("/", 1)[-1]

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def known_status(self) -> bool:
        return self.status in KNOWN_STATUSES

    @property
    def ended(self) -> float | None:
        """When a finished job ended: `endTime`, else `lastModifiedTime` (AWS marks `endTime` optional)."""
        if not self.finished:
            return None
        return self.end_time if self.end_time is not None else self.last_modified_time


@dataclass(frozen=True, slots=True)
class TaskKey:
    """One unit of polling: a namespace in one region of one target."""

    target: str
    region: str
    namespace: str


class CloudWatchValue(NamedTuple):
    """One series x statistic. `timestamp` is the CloudWatch datapoint's time, None for a missing-data value.

    `confirmed` is when AWS last answered for this series without an error; a value kept through per-result errors
    has `stale=True` and disappears once it is older than the staleness window (exporter.results).
    """

    series: SeriesKey
    statistic: str
    value: float
    timestamp: float | None
    confirmed: float
    stale: bool = False


class InsightsValue(NamedTuple):
    """One group of a Metrics Insights query; `group` pairs each GROUP BY key with its value."""

    query: str  # the configured name
    expression: str
    group: tuple[tuple[str, str], ...]
    value: float
    timestamp: float | None
    last_seen: float  # when the group last had a datapoint (groups are remembered for a while after)
    confirmed: float
    stale: bool = False


@dataclass(frozen=True, slots=True)
class JobsFinished:
    """Jobs seen entering a terminal status while the exporter watched, per model and status (a counter)."""

    model_id: str
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class JobUsage:
    """What a finished job's own output manifest (`manifest.json.out`) says it processed: exact, from Bedrock."""

    arn: str
    input_tokens: int
    output_tokens: int
    records: int | None = None
    succeeded_records: int | None = None
    failed_records: int | None = None


@dataclass(frozen=True, slots=True)
class JobEta:
    """Seconds until an InProgress job is estimated to finish (exporter.eta: an estimate, not an AWS value)."""

    arn: str
    seconds: float


@dataclass(frozen=True, slots=True)
class JobQueueWait:
    """Seconds an InProgress job waited from submission to InProgress: a lower bound (exporter.jobs.JobTracker)."""

    arn: str
    seconds: float


@dataclass(frozen=True, slots=True)
class ModelDrain:
    """A model's records left in unfinished jobs, its gross rate over the ETA window, and their quotient."""

    model_id: str
    records_left: float
    records_per_second: float
    seconds: float | None  # None while the model processes nothing


@dataclass(frozen=True, slots=True)
class RawQuota:
    """One Service Quotas quota of the `bedrock` service: code, name, value, and whether the value is the applied
    one (ListServiceQuotas) or the default (ListAWSDefaultServiceQuotas)."""

    code: str
    name: str
    value: float
    applied: bool

    @property
    def source(self) -> str:
        """The `source` label: `applied` (the account's value) or `default` (AWS's)."""
        return "applied" if self.applied else "default"


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """A model's concurrent batch-job quota and its jobs now (exporter.quotas: which statuses count is a choice)."""

    model_id: str
    code: str
    limit: float
    applied: bool
    in_use: int  # jobs holding a slot: InProgress, Stopping
    waiting: int  # jobs in Scheduled

    @property
    def source(self) -> str:
        """The `source` label: `applied` (the account's value) or `default` (AWS's)."""
        return "applied" if self.applied else "default"


@dataclass(frozen=True, slots=True)
class Price:
    """Batch price of one model in US dollars per million tokens (from the price table)."""

    model_id: str
    input: float
    output: float
    source: str | None = None  # where the price comes from and when it was checked


@dataclass(frozen=True)
class TaskState:
    """What one task last produced, and how its polling is going."""

    key: TaskKey
    account_id: str
    values: tuple[CloudWatchValue, ...] = ()
    insights: tuple[InsightsValue, ...] = ()
    jobs: tuple[Job, ...] = ()
    jobs_finished: tuple[JobsFinished, ...] = ()
    job_usage: tuple[JobUsage, ...] = ()  # manifests read so far, for retained finished jobs
    job_eta: tuple[JobEta, ...] = ()
    model_drain: tuple[ModelDrain, ...] = ()
    job_queue_wait: tuple[JobQueueWait, ...] = ()
    up: bool = False
    last_attempt: float | None = None
    last_success: float | None = None
    newest_datapoint: float | None = None
    last_error: str | None = None
    last_error_time: float | None = None
    consecutive_failures: int = 0
    polling_active: bool = True
    cloudwatch_timestamps: bool = False  # the namespace asks sinks to carry CloudWatch's datapoint times
    # Per-result errors of the last cycle (GetMetricData StatusCode -> results), and CloudWatch's messages.
    result_errors: tuple[tuple[str, int], ...] = ()
    result_messages: tuple[str, ...] = ()
    # Job summaries of the last listing skipped as malformed ("member: reason" -> summaries); their neighbours stay.
    bad_records: tuple[tuple[str, int], ...] = ()
    # Jobs over the `jobs.max_jobs` budget in the last listing, by kind ("finished", "running").
    jobs_dropped: tuple[tuple[str, int], ...] = ()
    # Series found but not polled: over the namespace's `discovery.max_series`.
    series_dropped: int = 0
    # Concurrent batch-job quotas per model (jobs.quotas), and the names of those no model could be matched to.
    quotas: tuple[QuotaUsage, ...] = ()
    quotas_unmatched: tuple[str, ...] = ()
    record_quotas: tuple[tuple[str, RawQuota], ...] = ()  # model ID -> its records-per-job quota
    # jobs.tag_labels: finished jobs' ARN -> each configured tag key's value ("" where untagged or refused)
    job_tags: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    @property
    def partial(self) -> bool:
        """Some results of the last cycle were errors: their series keep their last value or are absent."""
        return bool(self.result_errors)

    @property
    def series_count(self) -> int:
        return len(self.values) + len(self.insights) + len(self.jobs)

    def failed(self, error: str, now: float) -> TaskState:
        """The same records (last good data stays served), marked down with the error."""
        return replace(
            self,
            up=False,
            last_attempt=now,
            last_error=error,
            last_error_time=now,
            consecutive_failures=self.consecutive_failures + 1,
        )
