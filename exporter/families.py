"""Every Prometheus family the exporter can produce, and the one check that no two configured things share one.

Outside `sinks/` so the start-up checks (exporter.preflight) can call it. Names of CloudWatch families follow YACE
(exporter.naming); built-in families are listed here once, with their labels and help, and the Prometheus sink takes
them from here.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from exporter.config import Config
from exporter.failures import failure_reason
from exporter.model import KNOWN_STATUSES, CloudWatchValue, InsightsValue, Job, JobUsage, Price, SeriesKey, TaskState
from exporter.naming import dimension_label, metric_name, tag_label
from exporter.pricing import resolve

TASK_LABELS = ("account_id", "region")
JOB_LABELS = (*TASK_LABELS, "job_arn", "job_name", "model_id")
# Families that are the exporter's own (and `__`, which Prometheus reserves): a configured name may not start so.
RESERVED_PREFIXES = (
    "bedrock_batch_exporter_",
    "bedrock_batch_job",
    "bedrock_batch_model_",
    "bedrock_batch_quota_",
    "process_",
    "python_",
    "__",
)


class Family(NamedTuple):
    """One exported family: its name, kind, label names (dimension labels of CloudWatch families vary) and help."""

    name: str
    kind: Literal["gauge", "counter"]
    labels: tuple[str, ...]
    help: str


def _gauge(name: str, labels: tuple[str, ...], help_text: str) -> Family:
    return Family(name, "gauge", labels, help_text)


def _job(suffix: str, help_text: str, labels: tuple[str, ...] = JOB_LABELS) -> Family:
    return _gauge(f"bedrock_batch_job_{suffix}", labels, help_text)


JOBS = _gauge(
    "bedrock_batch_jobs",
    (*TASK_LABELS, "model_id", "status"),
    "Bedrock batch jobs by model and status (finished ones while retained).",
)
JOBS_FINISHED = Family(
    "bedrock_batch_jobs_finished",
    "counter",
    (*TASK_LABELS, "model_id", "status"),
    "Jobs seen entering a terminal status since the exporter started.",
)
JOB_INFO = _job(
    "info",
    "Bedrock batch job; always 1. Labels carry its status and invocation type.",
    (*JOB_LABELS, "status", "invocation_type"),
)
JOB_FAILURE = _job(
    "failure_info",
    "A job that ended Failed, PartiallyCompleted or Expired; always 1. `reason` is a class read from its message "
    "(s3_access, kms, network, input_format, quota, timeout, internal, other); the message is on / and /api/status.",
    (*JOB_LABELS, "status", "reason"),
)
JOB_QUEUE_WAIT = _job(
    "queue_wait_seconds",
    "Seconds an InProgress job waited from submission to InProgress: a lower bound (to the last listing that saw it "
    "waiting); only jobs the exporter saw waiting.",
)
JOB_INPUT_RECORDS = _job("input_records", "Records in the job's input.")
JOB_PROCESSED_RECORDS = _job("processed_records", "Records processed so far.")
JOB_SUCCEEDED_RECORDS = _job("succeeded_records", "Records processed successfully.")
JOB_FAILED_RECORDS = _job("failed_records", "Records that failed.")
JOB_SUBMIT_TIME = _job("submit_timestamp_seconds", "When the job was submitted (Unix time).")
JOB_EXPIRATION_TIME = _job("expiration_timestamp_seconds", "When the job will time out (Unix time).")
JOB_END_TIME = _job("end_timestamp_seconds", "When the job ended (Unix time); finished jobs only.")
JOB_INPUT_TOKENS = _job("input_tokens", "Input tokens of a finished job, from its manifest.json.out (exact).")
JOB_OUTPUT_TOKENS = _job("output_tokens", "Output tokens of a finished job, from its manifest.json.out (exact).")
JOB_COST = _job(
    "cost_dollars",
    "Cost of a finished job in US dollars: its manifest's tokens at the model's batch price; with jobs.tag_labels "
    "also a tag_<key> label per configured tag.",
)
JOB_ETA = _job(
    "eta_seconds",
    "Estimated seconds until an InProgress job finishes, from its model's recent rate (an estimate: docs/insight.md).",
)
MODEL_DRAIN_ETA = _gauge(
    "bedrock_batch_model_drain_eta_seconds",
    (*TASK_LABELS, "model_id"),
    "Estimated seconds until the records left in a model's unfinished jobs are processed, at its recent gross rate.",
)
MODEL_RATE = _gauge(
    "bedrock_batch_model_processed_records_per_second",
    (*TASK_LABELS, "model_id"),
    "Records a model's jobs processed per second over the ETA window (jobs.eta_window), while it has records left.",
)
_FINISHED_LABELS = (*TASK_LABELS, "model_id", "status")
FINISHED_INPUT_TOKENS = _gauge(
    "bedrock_batch_finished_jobs_input_tokens",
    _FINISHED_LABELS,
    "Input tokens of the retained finished jobs with a manifest, per model and status.",
)
FINISHED_OUTPUT_TOKENS = _gauge(
    "bedrock_batch_finished_jobs_output_tokens",
    _FINISHED_LABELS,
    "Output tokens of the retained finished jobs with a manifest, per model and status.",
)
FINISHED_COST = _gauge(
    "bedrock_batch_finished_jobs_cost_dollars",
    _FINISHED_LABELS,
    "Cost in US dollars of the retained finished jobs with a manifest and a price, per model and status.",
)
FINISHED_COST_BY_TAG = _gauge(
    "bedrock_batch_finished_jobs_cost_by_tag_dollars",
    (*TASK_LABELS, "model_id", "tag_key", "tag_value"),
    "Cost in US dollars of the retained finished jobs with a manifest and a price, per model and value of each "
    "tag key of jobs.tag_labels (tag_value empty: untagged); over the values of one key it sums to the whole.",
)
INPUT_PRICE = _gauge(
    "bedrock_batch_model_input_price_dollars_per_million_tokens",
    ("model_id",),
    "Batch price of one million input tokens (from the exporter's price table; check AWS prices).",
)
OUTPUT_PRICE = _gauge(
    "bedrock_batch_model_output_price_dollars_per_million_tokens",
    ("model_id",),
    "Batch price of one million output tokens (from the exporter's price table; check AWS prices).",
)
_QUOTA_LABELS = (*TASK_LABELS, "model_id")
QUOTA_LIMIT = _gauge(
    "bedrock_batch_quota_concurrent_jobs_limit",
    (*_QUOTA_LABELS, "quota_code", "source"),
    "The model's Service Quotas limit on its in-progress and submitted batch jobs; `source` is applied (the "
    "account's value) or default (AWS's default, where no applied value was listed).",
)
QUOTA_IN_USE = _gauge(
    "bedrock_batch_quota_concurrent_jobs",
    _QUOTA_LABELS,
    "The model's jobs counted toward its concurrent-job quota: InProgress and Stopping (AWS does not document "
    "which statuses count; docs/metrics.md#quota-headroom).",
)
QUOTA_WAITING = _gauge(
    "bedrock_batch_quota_waiting_jobs",
    _QUOTA_LABELS,
    "The model's jobs in Scheduled: waiting for a slot under its concurrent-job quota.",
)
QUOTA_RECORDS = _gauge(
    "bedrock_batch_quota_records_per_job_limit",
    (*_QUOTA_LABELS, "quota_code", "source"),
    "The model's Service Quotas limit on the records of one batch job (\"Records per batch inference job for "
    '<model>"), to compare with bedrock_batch_job_input_records; `source` as for the concurrent-job limit.',
)
QUOTA_UNMATCHED = _gauge(
    "bedrock_batch_quota_unmatched",
    TASK_LABELS,
    "Per-model batch quotas (concurrent jobs, records per job) whose model name matched no foundation model (names on "
    "/; map them with jobs.quotas.model_map).",
)
BUILTIN: tuple[Family, ...] = (
    JOBS,
    JOBS_FINISHED,
    JOB_INFO,
    JOB_FAILURE,
    JOB_QUEUE_WAIT,
    JOB_INPUT_RECORDS,
    JOB_PROCESSED_RECORDS,
    JOB_SUCCEEDED_RECORDS,
    JOB_FAILED_RECORDS,
    JOB_SUBMIT_TIME,
    JOB_EXPIRATION_TIME,
    JOB_END_TIME,
    JOB_INPUT_TOKENS,
    JOB_OUTPUT_TOKENS,
    JOB_COST,
    JOB_ETA,
    MODEL_DRAIN_ETA,
    MODEL_RATE,
    FINISHED_INPUT_TOKENS,
    FINISHED_OUTPUT_TOKENS,
    FINISHED_COST,
    FINISHED_COST_BY_TAG,
    INPUT_PRICE,
    OUTPUT_PRICE,
    QUOTA_LIMIT,
    QUOTA_IN_USE,
    QUOTA_WAITING,
    QUOTA_RECORDS,
    QUOTA_UNMATCHED,
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of a family: labels are the exporter's label names (the OTLP sink maps them to attributes)."""

    family: Family
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp: float | None = None


def task_labels(account_id: str, region: str) -> tuple[tuple[str, str], ...]:
    return (("account_id", account_id), ("region", region))


def job_labels(base: tuple[tuple[str, str], ...], job: Job) -> tuple[tuple[str, str], ...]:
    """A job's series labels: the task's, then its ARN, name and model."""
    return (*base, ("job_arn", job.arn), ("job_name", job.name), ("model_id", job.model_id))


def record_labels(
    base: tuple[tuple[str, str], ...], dimensions: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """A CloudWatch series' or an Insights group's labels: the task's, then `dimension_<Name>` (YACE's) for each."""
    return (*base, *((dimension_label(k), v) for k, v in dimensions))


def series_labels(account_id: str, region: str, series: SeriesKey) -> tuple[tuple[str, str], ...]:
    """A CloudWatch series' labels: `account_id` is the owning account's for a linked account's series."""
    return record_labels(task_labels(series.account or account_id, region), series.dimensions)


def model_ids(states: Iterable[TaskState]) -> set[str]:
    """Every model ID the tasks report (CloudWatch's ModelId dimension, Insights groups, jobs), as reported."""
    seen: set[str] = set()
    for state in states:
        seen.update(series_model_ids(value.series for value in state.values))
        seen.update(other_model_ids(state))
    return seen


def series_model_ids(series: Iterable[SeriesKey]) -> Iterator[str]:
    """The ModelId dimension values of CloudWatch series."""
    return (v for key in series for k, v in key.dimensions if k == "ModelId")


def other_model_ids(state: TaskState) -> Iterator[str]:
    """The model IDs a task reports besides its CloudWatch series: Insights groups' ModelId, jobs' models."""
    yield from (v for group in state.insights for k, v in group.group if k == "ModelId")
    yield from (job.model_id for job in state.jobs)


def price_samples(prices: Iterable[Price], seen: Iterable[str] = ()) -> Iterator[Sample]:
    """The price table, plus a price for each reported model ID (inference profile, ARN) that resolves to one, so
    PromQL joins on `model_id` work with the IDs as CloudWatch reports them."""
    table = {p.model_id: p for p in prices}
    resolved = (resolve(model, table) for model in sorted(set(seen) - table.keys()))
    for price in (*table.values(), *(p for p in resolved if p is not None)):
        labels = (("model_id", price.model_id),)
        yield Sample(INPUT_PRICE, labels, price.input)
        yield Sample(OUTPUT_PRICE, labels, price.output)


def record_samples(state: TaskState) -> Iterator[tuple[CloudWatchValue | InsightsValue, Sample]]:
    """Each CloudWatch value and Insights group of a task with its sample (YACE's names, `dimension_<Name>` labels;
    the CloudWatch timestamp when the namespace asks for it): one place for the sinks and the tests' oracle."""
    base = task_labels(state.account_id, state.key.region)
    stamps = state.cloudwatch_timestamps
    for value in state.values:
        series = value.series
        family = cloudwatch_family(series.namespace, series.metric, value.statistic)
        stamp = value.timestamp if stamps else None
        labels = series_labels(state.account_id, state.key.region, series)
        yield value, Sample(family, labels, value.value, stamp)
    for group in state.insights:
        family = insights_family(group.query, group.expression)
        yield group, Sample(family, record_labels(base, group.group), group.value, group.timestamp if stamps else None)


def job_cost(usage: JobUsage, price: Price | None) -> float | None:
    """Dollars for a job's exact tokens at a batch price per million tokens; None without a price."""
    if price is None:
        return None
    return usage.input_tokens / 1e6 * price.input + usage.output_tokens / 1e6 * price.output


class JobSpend(NamedTuple):
    """A retained finished job with its manifest's tokens and their cost (None without a price)."""

    job: Job
    usage: JobUsage
    cost: float | None


class SpendTotal(NamedTuple):
    """Sums over the finished jobs of one model and status; `cost` covers the `priced` jobs only."""

    input_tokens: float
    output_tokens: float
    cost: float
    priced: int


def job_spend(state: TaskState, prices: Mapping[str, Price]) -> list[JobSpend]:
    """Every job of the task whose manifest was read, costed: the one place job cost is worked out for all sinks."""
    jobs = {job.arn: job for job in state.jobs}
    return [
        JobSpend(job, usage, job_cost(usage, resolve(job.model_id, prices)))
        for usage in state.job_usage
        if (job := jobs.get(usage.arn)) is not None
    ]


def spend_totals(spend: Iterable[JobSpend]) -> dict[tuple[str, str], SpendTotal]:
    """(model_id, status) -> its finished jobs' token and cost sums, sorted."""
    totals: dict[tuple[str, str], SpendTotal] = {}
    for job, usage, cost in spend:
        key = (job.model_id, job.status)
        t = totals.get(key, SpendTotal(0.0, 0.0, 0.0, 0))
        totals[key] = SpendTotal(
            t.input_tokens + usage.input_tokens,
            t.output_tokens + usage.output_tokens,
            t.cost + (cost or 0.0),
            t.priced + (cost is not None),
        )
    return dict(sorted(totals.items()))


def job_samples(state: TaskState, prices: Mapping[str, Price] | None = None) -> Iterator[Sample]:
    """Job counts by model and status (every known status, 0 where none; unknown ones as seen), and per job."""
    base = task_labels(state.account_id, state.key.region)
    counts = Counter((j.model_id, j.status) for j in state.jobs)
    statuses = (*KNOWN_STATUSES, *sorted({j.status for j in state.jobs} - set(KNOWN_STATUSES)))
    for model in sorted({j.model_id for j in state.jobs} | {f.model_id for f in state.jobs_finished}):
        for status in statuses:
            yield Sample(JOBS, (*base, ("model_id", model), ("status", status)), float(counts[(model, status)]))
    for finished in state.jobs_finished:
        labels = (*base, ("model_id", finished.model_id), ("status", finished.status))
        yield Sample(JOBS_FINISHED, labels, float(finished.count))
    for job in state.jobs:
        labels = job_labels(base, job)
        info = (*labels, ("status", job.status), ("invocation_type", job.invocation_type))
        yield Sample(JOB_INFO, info, 1.0)
        if (reason := failure_reason(job.status, job.message)) is not None:
            yield Sample(JOB_FAILURE, (*labels, ("status", job.status), ("reason", reason)), 1.0)
        for family, value in (
            (JOB_INPUT_RECORDS, job.total_records),
            (JOB_PROCESSED_RECORDS, job.processed_records),
            (JOB_SUCCEEDED_RECORDS, job.succeeded_records),
            (JOB_FAILED_RECORDS, job.failed_records),
            (JOB_SUBMIT_TIME, job.submit_time),
            (JOB_EXPIRATION_TIME, job.expiration_time),
            (JOB_END_TIME, job.ended),
        ):
            if value is not None:
                yield Sample(family, labels, value)
    yield from _estimate_samples(state, base)
    yield from _usage_samples(state, base, prices or {})
    yield from _quota_samples(state, base)


def _quota_samples(state: TaskState, base: tuple[tuple[str, str], ...]) -> Iterator[Sample]:
    """Each model's concurrent-job quota and its jobs against it (exporter.quotas); the unmatched quotas' count."""
    for quota in state.quotas:
        labels = (*base, ("model_id", quota.model_id))
        yield Sample(QUOTA_LIMIT, (*labels, ("quota_code", quota.code), ("source", quota.source)), quota.limit)
        yield Sample(QUOTA_IN_USE, labels, float(quota.in_use))
        yield Sample(QUOTA_WAITING, labels, float(quota.waiting))
    for model, records in state.record_quotas:
        labels = (*base, ("model_id", model), ("quota_code", records.code), ("source", records.source))
        yield Sample(QUOTA_RECORDS, labels, records.value)
    if state.quotas or state.quotas_unmatched:
        yield Sample(QUOTA_UNMATCHED, base, float(len(state.quotas_unmatched)))


def _estimate_samples(state: TaskState, base: tuple[tuple[str, str], ...]) -> Iterator[Sample]:
    """Job ETAs (InProgress jobs only) and model drain times, as exporter.eta estimated them."""
    jobs = {job.arn: job for job in state.jobs}
    for eta in state.job_eta:
        job = jobs.get(eta.arn)
        if job is not None and job.status == "InProgress":
            yield Sample(JOB_ETA, job_labels(base, job), eta.seconds)
    for wait in state.job_queue_wait:
        job = jobs.get(wait.arn)
        if job is not None:
            yield Sample(JOB_QUEUE_WAIT, job_labels(base, job), wait.seconds)
    for drain in state.model_drain:
        labels = (*base, ("model_id", drain.model_id))
        yield Sample(MODEL_RATE, labels, drain.records_per_second)
        if drain.seconds is not None:
            yield Sample(MODEL_DRAIN_ETA, labels, drain.seconds)


def _usage_samples(
    state: TaskState, base: tuple[tuple[str, str], ...], prices: Mapping[str, Price]
) -> Iterator[Sample]:
    """Per finished job, its manifest's tokens and cost; per model and status, their sums over retained jobs."""
    spend = job_spend(state, prices)
    tags = dict(state.job_tags)
    by_tag: dict[tuple[str, str, str], float] = {}
    for job, usage, cost in spend:
        labels = job_labels(base, job)
        yield Sample(JOB_INPUT_TOKENS, labels, float(usage.input_tokens))
        yield Sample(JOB_OUTPUT_TOKENS, labels, float(usage.output_tokens))
        if cost is not None:
            pairs = tags.get(job.arn, ())
            yield Sample(JOB_COST, (*labels, *((tag_label(k), v) for k, v in pairs)), cost)
            for key, value in pairs:
                by_tag[(job.model_id, key, value)] = by_tag.get((job.model_id, key, value), 0.0) + cost
    for (model, key, value), spent in sorted(by_tag.items()):
        yield Sample(FINISHED_COST_BY_TAG, (*base, ("model_id", model), ("tag_key", key), ("tag_value", value)), spent)
    for (model, status), total in spend_totals(spend).items():
        labels = (*base, ("model_id", model), ("status", status))
        yield Sample(FINISHED_INPUT_TOKENS, labels, total.input_tokens)
        yield Sample(FINISHED_OUTPUT_TOKENS, labels, total.output_tokens)
        if total.priced:
            yield Sample(FINISHED_COST, labels, total.cost)


@functools.lru_cache(maxsize=4096)  # one Family (and name string) per metric and statistic, not one per series
def cloudwatch_family(namespace: str, metric: str, statistic: str) -> Family:
    return _gauge(
        metric_name(namespace, metric, statistic), TASK_LABELS, f"CloudWatch {namespace} {metric} {statistic}"
    )


@functools.lru_cache(maxsize=1024)
def insights_family(name: str, expression: str) -> Family:
    return _gauge(name, TASK_LABELS, f"CloudWatch Metrics Insights: {expression}")


def config_families(config: Config) -> list[tuple[str, Family, tuple[str, ...]]]:
    """(field path, family, meaning) for every family the config produces; equal names need equal meanings."""
    out: list[tuple[str, Family, tuple[str, ...]]] = []
    for i, ns in enumerate(config.namespaces):
        for j, metric in enumerate(ns.resolved_metrics()):
            where = f"namespaces[{i}].metrics[{j}].name" if ns.metrics is not None else f"namespaces[{i}].namespace"
            for stat in metric.statistics:
                family = cloudwatch_family(ns.namespace, metric.name, stat)
                out.append((where, family, ("cloudwatch", ns.namespace, metric.name, stat)))
        for j, query in enumerate(ns.insights):
            out.append((f"namespaces[{i}].insights[{j}].name", insights_family(query.name, query.query), ("insights",)))
    return out


def config_collisions(config: Config) -> list[str]:
    """One line per pair of configured things that would export one family with a different meaning."""
    problems: list[str] = []
    seen: dict[str, tuple[str, tuple[str, ...]]] = {}
    builtin = {f.name for f in BUILTIN}
    for where, family, meaning in config_families(config):
        if family.name in builtin or family.name.startswith(RESERVED_PREFIXES):
            problems.append(f"{where}: exports {family.name!r}, a name reserved for the exporter's own series")
            continue
        first = seen.get(family.name)
        if first is None:
            seen[family.name] = (where, meaning)
        elif first[1] != meaning or meaning == ("insights",):
            problems.append(f"{where}: exports {family.name!r}, which {first[0]} already exports with another meaning")
    return problems
