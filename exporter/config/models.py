"""The configuration models: frozen pydantic classes whose validators name the field path of each problem."""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, field_validator, model_validator

from exporter.config.base import (
    DAY,
    DURATION_SCHEMA,
    Duration,
    Interval,
    Key,
    StrictModel,
    Timeout,
    check_url,
    duration_bounds,
    format_seconds,
    parse_duration,
)
from exporter.config.namespaces import defaults_for
from exporter.insights import parse
from exporter.model import BEDROCK_BATCH_NAMESPACE, MissingData, ResolvedInsights, ResolvedMetric
from exporter.naming import dimension_label, metric_name, tag_label
from exporter.planner import compile_dimension_filter
from exporter.regions import region_problem

_PERCENTILE_RE = re.compile(r"^p(\d{1,2}(\.\d{1,2})?|100)$")
_BASIC_STATISTICS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")

# Finished jobs are kept for dashboards for at most a quarter; listing looks back at most a year (the job API
# documents no limit; a bound keeps the value finite and the listing small).
MAX_JOB_RETENTION = 90 * DAY
MAX_JOB_LOOKBACK = 365 * DAY
# CloudWatch keeps 1-hour datapoints for 455 days ("Metrics retention", CloudWatch concepts): a window reaching
# further back can only ever come back empty.
CLOUDWATCH_RETENTION = 455 * DAY


def _whole_seconds(seconds: float) -> float:
    if seconds != int(seconds):
        raise ValueError(f"CloudWatch counts whole seconds, got {format_seconds(seconds)}")
    return seconds


# Periods, lengths and delays go to CloudWatch as whole seconds; the period's allowed values are checked per window.
WindowPart = Annotated[
    float,
    BeforeValidator(parse_duration),
    duration_bounds(0, CLOUDWATCH_RETENTION),
    AfterValidator(_whole_seconds),
    DURATION_SCHEMA,
]


def _check_statistics(value: tuple[str, ...]) -> tuple[str, ...]:
    for stat in value:
        if stat not in _BASIC_STATISTICS and not _PERCENTILE_RE.match(stat):
            raise ValueError(f"unknown statistic {stat!r}: use one of {', '.join(_BASIC_STATISTICS)} or pNN")
    if len(set(value)) != len(value):
        raise ValueError("statistics are listed more than once")
    return value


Statistics = Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_check_statistics)]
# A CloudWatch-compatible or OTLP endpoint: checked by check_url (no user info, a port in range).
Endpoint = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$"), AfterValidator(check_url)]


class MetricConfig(StrictModel):
    """One CloudWatch metric and how to ask for it; unset fields inherit the namespace's values."""

    name: str = Field(min_length=1, max_length=255, description="CloudWatch MetricName")
    statistics: Statistics | None = Field(
        default=None,
        description="Sum, Average, Minimum, Maximum, SampleCount or a percentile like p99",
    )
    period: WindowPart | None = None
    length: WindowPart | None = None
    delay: WindowPart | None = None
    missing_data: MissingData | None = None


class DiscoveryConfig(StrictModel):
    """How the dimension sets of a namespace's metrics are found."""

    mode: Literal["list_metrics", "static"] = "list_metrics"
    refresh_interval: Annotated[Duration, duration_bounds(0, DAY)] = Field(
        default=600.0, description="how long ListMetrics results are reused (0: list on every poll; at most 1d)"
    )
    recently_active: bool = Field(
        default=True, description="ask ListMetrics only for metrics with data in the last 3 hours"
    )
    dimension_filters: dict[Key, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict,
        description="dimension name -> RE2 regular expression (Prometheus' dialect) found anywhere in its value; "
        "anchor with ^...$ to match the whole value",
    )
    static: tuple[dict[Key, str], ...] = Field(
        default=(), description="dimension sets to query in static mode, e.g. [{ModelId: my-model}]"
    )
    max_series: int = Field(
        default=10_000,
        ge=1,
        le=100_000,
        description="series (metric and dimension set) polled per region; above it whole dimension sets are "
        "dropped, counted in bedrock_batch_exporter_series_not_polled",
    )

    @field_validator("dimension_filters")
    @classmethod
    def _valid_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            try:
                compile_dimension_filter(pattern)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _static_needs_sets(self) -> DiscoveryConfig:
        if self.mode == "static" and not self.static:
            raise ValueError("mode static needs at least one dimension set under 'static'")
        if self.mode == "list_metrics" and self.static:
            raise ValueError("'static' dimension sets are only used with mode: static")
        return self


# RFC 9110 section 5.1 (field names are tokens) and 5.5 (field values: no CR, LF, NUL or other controls but tab).
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEADER_VALUE_BAD_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PROMETHEUS_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# Metrics Insights reads at most the last 3 hours for alarms, and the API reference of GetMetricData says 3 hours
# for every query (newer guides say two weeks for graphs): windows stay within the stricter limit.
INSIGHTS_MAX_LOOKBACK = 3 * 3600


class InsightsQueryConfig(StrictModel):
    """A named CloudWatch Metrics Insights query, exported as one gauge with a series per GROUP BY group."""

    name: str = Field(min_length=1, max_length=200, description="Prometheus metric name of the result")
    query: str = Field(
        min_length=1,
        max_length=2048,
        description="Metrics Insights SQL in the supported subset (docs/insights.md), e.g. SELECT "
        'AVG(NumberOfRecordsPendingProcessing) FROM SCHEMA("AWS/Bedrock/Batch", ModelId) GROUP BY ModelId',
    )
    period: WindowPart | None = Field(
        default=None, description="aggregation period, a multiple of 60s; defaults to the namespace's period"
    )

    @field_validator("name")
    @classmethod
    def _prometheus_name(cls, value: str) -> str:
        if not _PROMETHEUS_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
        return value

    @field_validator("query")
    @classmethod
    def _supported_query(cls, value: str) -> str:
        parse(value)  # InsightsSyntaxError is a ValueError: pydantic reports it at this field
        return value


class NamespaceConfig(StrictModel):
    """A CloudWatch namespace to poll, with its schedule and metrics."""

    namespace: str = Field(min_length=1, max_length=255)
    interval: Interval = Field(default=60.0, description="how often this namespace is polled (1s to 1d)")
    period: WindowPart = Field(
        default=60.0,
        description="CloudWatch aggregation period: 1, 5, 10, 20, 30s or a multiple of 60s; windows reaching back "
        "more than 3h need a multiple of 60s, 15d 300s, 63d 3600s",
    )
    length: WindowPart = Field(
        default=300.0, description="lookback window; the newest datapoint in it is kept (length + delay <= 455d)"
    )
    delay: WindowPart = Field(default=60.0, description="shift the window back to skip still-filling periods")
    statistics: Statistics = ("Average",)
    missing_data: MissingData | None = Field(
        default=None,
        description="default for the metrics: zero for AWS/Bedrock/Batch, nan elsewhere (as YACE)",
    )
    add_cloudwatch_timestamp: bool = Field(
        default=False, description="attach the datapoint's CloudWatch timestamp to each sample"
    )
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    metrics: tuple[MetricConfig, ...] | None = Field(
        default=None,
        description="defaults to the four Bedrock batch metrics for AWS/Bedrock/Batch; [] polls only the Insights "
        "queries (no ListMetrics)",
    )
    insights: tuple[InsightsQueryConfig, ...] = Field(
        default=(), description="named Metrics Insights queries of this namespace (docs/insights.md)"
    )

    @model_validator(mode="after")
    def _check(self) -> NamespaceConfig:
        if self.metrics is None and not defaults_for(self.namespace).metrics and not self.insights:
            raise ValueError(f"'metrics' is required for namespace {self.namespace!r}")
        names = [m.name for m in self.metrics or ()]
        if len(set(names)) != len(names):
            raise ValueError("a metric is listed more than once")
        own = self.metrics if self.metrics is not None else (None,) * len(self.resolved_metrics())
        for i, (metric, metric_config) in enumerate(zip(self.resolved_metrics(), own, strict=True)):
            if (problem := _window_problem(metric, metric_config, i)) is not None:
                raise ValueError(problem)
        self._check_insights()
        return self

    def _check_insights(self) -> None:
        taken = {metric_name(self.namespace, m.name, s) for m in self.resolved_metrics() for s in m.statistics}
        for i, (item, resolved) in enumerate(zip(self.insights, self.resolved_insights(), strict=True)):
            where = f"insights[{i}]"
            query = parse(item.query)
            if query.namespace != self.namespace:
                raise ValueError(
                    f"{where}.query: reads namespace {query.namespace!r}; list it under that namespace instead"
                )
            if item.name in taken:
                raise ValueError(f"{where}.name: {item.name!r} is already the name of another series here")
            taken.add(item.name)
            labels = [dimension_label(k) for k in query.group_by]
            if len(set(labels)) != len(labels):
                raise ValueError(f"{where}.query: two GROUP BY keys map to the same label {labels}")
            if resolved.period < 60 or resolved.period % 60:
                raise ValueError(
                    f"{where}.period: Metrics Insights aggregates to whole minutes; use a multiple of 60s, "
                    f"got {resolved.period}s"
                )
            if resolved.length + resolved.delay > INSIGHTS_MAX_LOOKBACK:
                raise ValueError(
                    f"{where}: the window (length + delay = {resolved.length + resolved.delay}s) reaches further "
                    f"back than the {INSIGHTS_MAX_LOOKBACK // 3600} hours Metrics Insights queries may read"
                )

    def resolved_insights(self) -> tuple[ResolvedInsights, ...]:
        """Insights queries with period (default: the namespace's, at least 60s), length and delay filled in."""
        default_period = int(self.period) if self.period >= 60 else 60
        missing = self.missing_data or defaults_for(self.namespace).missing_data
        out = []
        for item in self.insights:
            query = parse(item.query)
            period = int(item.period) if item.period is not None else default_period
            out.append(
                ResolvedInsights(
                    name=item.name,
                    expression=query.expression(),
                    group_by=query.group_by,
                    period=period,
                    length=max(int(self.length), period),
                    delay=int(self.delay),
                    missing_data=missing,
                )
            )
        return tuple(out)

    def resolved_metrics(self) -> tuple[ResolvedMetric, ...]:
        default_missing = self.missing_data or defaults_for(self.namespace).missing_data
        if self.metrics is not None:
            metrics = self.metrics
        else:
            metrics = tuple(MetricConfig(name=n, statistics=s) for n, s in defaults_for(self.namespace).metrics)
        return tuple(
            ResolvedMetric(
                name=m.name,
                statistics=m.statistics or self.statistics,
                period=int(m.period if m.period is not None else self.period),
                length=int(m.length if m.length is not None else self.length),
                delay=int(m.delay if m.delay is not None else self.delay),
                missing_data=m.missing_data or default_missing,
            )
            for m in metrics
        )


# Periods CloudWatch accepts (botocore cloudwatch 2010-08-01, shape MetricStat, member Period): 1, 5, 10, 20, 30 or a
# multiple of 60 seconds; and if the start time is more than 3 hours ago a multiple of 60, more than 15 days ago a
# multiple of 300, more than 63 days ago a multiple of 3600, "or no data points in that time range is returned".
SUB_MINUTE_PERIODS = (1, 5, 10, 20, 30)
PERIOD_AGE_TIERS = ((63 * 86400, 3600), (15 * 86400, 300), (3 * 3600, 60))


def window_reach(period: int, length: int, delay: int) -> int:
    """How far back (seconds) the planner's window can start: delay, whole periods of length, one period of alignment.

    `planner.window` ends the window at the last period boundary before now - delay, so its start lies less than
    delay + ceil(length / period) * period + period seconds ago.
    """
    return delay + -(-length // period) * period + period


def period_problem(period: int, length: int, delay: int) -> str | None:
    """Why CloudWatch would refuse or answer nothing for this period and window; None when it is fine."""
    if period not in SUB_MINUTE_PERIODS and period % 60:
        return f"period must be 1, 5, 10, 20, 30 or a multiple of 60 seconds, got {period}s"
    reach = window_reach(period, length, delay)
    for age, multiple in PERIOD_AGE_TIERS:
        if reach > age and period % multiple:
            return (
                f"the window reaches back up to {format_seconds(reach)} (length + delay + one period of alignment), "
                f"more than {format_seconds(age)}: CloudWatch then needs a period that is a multiple of "
                f"{multiple}s, got {period}s"
            )
    return None


def _window_problem(metric: ResolvedMetric, own: MetricConfig | None, index: int) -> str | None:
    """The first problem of a metric's window, naming the field that set it (the metric's own, else the namespace's)."""

    def field(name: str) -> str:
        return f"metrics[{index}].{name}" if own is not None and getattr(own, name) is not None else name

    if metric.period < 1:
        return f"{field('period')}: must be at least 1s"
    if metric.length < metric.period:
        return f"{field('length')}: {metric.length}s is shorter than the period ({metric.period}s) of {metric.name}"
    if metric.length + metric.delay > CLOUDWATCH_RETENTION:
        return (
            f"{field('length')}: length + delay of {metric.name} reach back "
            f"{format_seconds(metric.length + metric.delay)}, beyond the 455 days CloudWatch keeps any datapoint"
        )
    if (problem := period_problem(metric.period, metric.length, metric.delay)) is not None:
        return f"{field('period')}: {problem} (metric {metric.name})"
    return None


class TargetConfig(StrictModel):
    """Where to poll: one AWS account (optionally through an assumed role) and its regions."""

    name: str | None = Field(default=None, description="a label for logs; defaults to the account")
    account_id: str | None = Field(
        default=None, pattern=r"^\d{12}$", description="skip the STS lookup and use this account id"
    )
    regions: tuple[str, ...] = Field(
        min_length=1,
        description="AWS regions as botocore's partition data lists them (a typo is refused with the nearest names); "
        "any region name with endpoint_url",
    )
    role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
    external_id: str | None = Field(default=None, min_length=2, max_length=1224)
    endpoint_url: Endpoint | None = Field(
        default=None,
        description="a CloudWatch-compatible endpoint; port 1-65535, no user:password@",
    )
    namespaces: tuple[str, ...] | None = Field(
        default=None, description="restrict this target to these namespaces (default: all)"
    )
    include_linked_accounts: bool = Field(
        default=False,
        description="a CloudWatch monitoring account: also list and query its linked source accounts' metrics, "
        "each labelled with its owning account (docs/deployment.md#monitoring-accounts); their Bedrock jobs are not "
        "visible from here, so this target's CloudWatch polling never pauses for want of jobs",
    )

    @field_validator("account_id", "role_arn", "external_id", "endpoint_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("regions")
    @classmethod
    def _valid_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for region in value:
            if not re.match(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$", region):
                raise ValueError(f"{region!r} is not an AWS region name like us-east-1")
        if len(set(value)) != len(value):
            raise ValueError("a region is listed more than once")
        return value

    @model_validator(mode="after")
    def _external_id_needs_role(self) -> TargetConfig:
        if self.external_id and not self.role_arn:
            raise ValueError("external_id is only used together with role_arn")
        if self.endpoint_url is None:  # a custom endpoint may serve a region botocore does not list
            for i, region in enumerate(self.regions):
                if (problem := region_problem(region)) is not None:
                    raise ValueError(f"regions[{i}]: {problem}")
        return self

    @property
    def label(self) -> str:
        return self.name or self.account_id or (self.role_arn or "default")


class AwsConfig(StrictModel):
    """How AWS is called: botocore retry mode, timeouts and concurrency."""

    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    max_attempts: int = Field(default=3, ge=1, le=10)
    connect_timeout: Timeout = Field(default=5.0, description="per attempt, more than 0 and at most 10m")
    read_timeout: Timeout = Field(default=15.0, description="per attempt, more than 0 and at most 10m")
    max_concurrent_requests: int = Field(default=8, ge=1, le=64, description="GetMetricData calls in flight")
    max_queries_per_call: int = Field(default=500, ge=1, le=500, description="CloudWatch allows 500")
    max_answer_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        description="a larger AWS answer is not read: a bad answer (64 KiB to 256 MiB)",
    )


class QuotasConfig(StrictModel):
    """Quota headroom: each model's concurrent batch-job quota (Service Quotas) next to its jobs (docs/metrics.md)."""

    enabled: bool = Field(
        default=True,
        description="read the bedrock service quotas and the foundation models' names (servicequotas:"
        "ListAWSDefaultServiceQuotas, servicequotas:ListServiceQuotas, bedrock:ListFoundationModels); without "
        "permission the rest keeps working and the denial is counted",
    )
    refresh_interval: Annotated[Duration, duration_bounds(60, DAY)] = Field(
        default=3600.0, description="how often the quotas are read in each region (1m to 1d); also at start"
    )
    model_map: dict[
        Annotated[str, Field(min_length=1, max_length=256)],
        Annotated[tuple[Annotated[str, Field(min_length=1, max_length=2048)], ...], Field(min_length=1, max_length=50)],
    ] = Field(
        default_factory=dict,
        max_length=1000,
        description="a quota code (L-...) or whole quota name -> the model IDs it applies to, for quotas whose "
        "model name matches no foundation model's name (overrides the match by name)",
    )


class JobsConfig(StrictModel):
    """The Bedrock batch-job collector (ListModelInvocationJobs) and job-aware polling of AWS/Bedrock/Batch."""

    enabled: bool = True
    interval: Interval = Field(default=60.0, description="how often jobs are listed in each region (1s to 1d)")
    retention: Annotated[Duration, duration_bounds(0, MAX_JOB_RETENTION)] = Field(
        default=86400.0, description="finished jobs stay exported this long after they end (at most 90d)"
    )
    lookback: Annotated[Duration, duration_bounds(0, MAX_JOB_LOOKBACK)] = Field(
        default=14 * 86400.0,
        description="list jobs submitted this long ago or later; must exceed the 7-day maximum job timeout plus "
        "queueing plus retention, so every unfinished job is seen",
    )
    page_size: int = Field(default=1000, ge=1, le=1000, description="maxResults per ListModelInvocationJobs page")
    max_jobs: int = Field(
        default=20_000,
        ge=1,
        le=200_000,
        description="jobs kept per region (memory budget, docs/reliability.md): past it the oldest finished jobs are "
        "dropped first, then the oldest running ones, each counted; running jobs dropped also warn on /",
    )
    pause_idle_metrics: bool = Field(
        default=True,
        description="skip GetMetricData for AWS/Bedrock/Batch in a region while it has no unfinished job",
    )
    idle_heartbeat: Annotated[Duration, duration_bounds(1, DAY, zero=True)] = Field(
        default=0.0, description="while paused, still poll CloudWatch this often (0 = never; 1s to 1d)"
    )
    eta_window: Annotated[Duration, duration_bounds(10, DAY)] = Field(
        default=300.0,
        description="the records each model's jobs processed over this window give its rate, for job ETAs and "
        "drain times (10s to 1d; docs/insight.md)",
    )
    read_manifests: bool = Field(
        default=False,
        description="read each finished job's manifest.json.out from its S3 output (exact tokens and cost per job; "
        "needs s3:GetObject, docs/job-cost.md)",
    )
    manifest_max_concurrency: int = Field(default=4, ge=1, le=32, description="manifest reads in flight per region")
    manifest_retry: Annotated[Duration, duration_bounds(1, 3600)] = Field(
        default=60.0, description="first retry of a failed manifest read; doubles up to 1h (1s to 1h)"
    )
    manifest_give_up_after: Annotated[Duration, duration_bounds(60, 7 * DAY)] = Field(
        default=86400.0,
        description="stop retrying this long after the job ended and count the manifest as missing (1m to 7d)",
    )
    manifest_max_bytes: int = Field(
        default=65536, ge=1024, le=1024 * 1024, description="larger manifests are refused (1 KiB to 1 MiB)"
    )
    quotas: QuotasConfig = Field(default_factory=QuotasConfig)
    tag_labels: tuple[Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9 ._:/=+@-]+$")], ...] = (
        Field(
            default=(),
            max_length=10,
            description="job tag keys whose values label each finished job's cost and the cost by tag "
            "(ListTagsForResource once per finished job, needs bedrock:ListTagsForResource; docs/job-cost.md). Off "
            "when empty; label names are tag_<key> with characters other than letters, digits and _ as _",
        )
    )

    @model_validator(mode="after")
    def _tag_labels_are_distinct(self) -> JobsConfig:
        names = [tag_label(key) for key in self.tag_labels]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f"tag_labels: keys that give the same label name {', '.join(clash)}: keep one of each")
        return self

    @model_validator(mode="after")
    def _lookback_covers_jobs(self) -> JobsConfig:
        if self.lookback < 7 * 86400 + self.retention:
            raise ValueError("lookback must be at least 7 days (the longest job timeout) plus retention")
        return self


# No model costs anywhere near this; a bigger number is a unit mistake (dollars per token, say).
MAX_PRICE = 100_000.0


class ModelPrice(StrictModel):
    """On-demand list prices of one model in US dollars per million tokens."""

    input: float = Field(ge=0, le=MAX_PRICE, description="dollars per million input tokens, on demand")
    output: float = Field(ge=0, le=MAX_PRICE, description="dollars per million output tokens, on demand")
    source: str | None = Field(
        default=None, max_length=500, description="where the price comes from and when it was checked (shown on /)"
    )


# The shipped table's provenance: each entry below was read from this page on this date.
SHIPPED_PRICE_SOURCE = "Amazon Bedrock pricing page, on-demand, us-east-1, checked 2025"


# On-demand us-east-1 list prices in USD per million tokens as published by AWS in 2025. They change and differ by
# region: check the Amazon Bedrock price list and override them under `pricing.models`.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    model: ModelPrice(input=i, output=o, source=SHIPPED_PRICE_SOURCE)
    for model, i, o in (
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", 3.0, 15.0),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", 3.0, 15.0),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", 0.8, 4.0),
        ("anthropic.claude-3-haiku-20240307-v1:0", 0.25, 1.25),
        ("amazon.nova-pro-v1:0", 0.8, 3.2),
        ("amazon.nova-lite-v1:0", 0.06, 0.24),
        ("amazon.nova-micro-v1:0", 0.035, 0.14),
        ("meta.llama3-1-70b-instruct-v1:0", 0.72, 0.72),
        ("meta.llama3-1-8b-instruct-v1:0", 0.22, 0.22),
        ("amazon.titan-embed-text-v2:0", 0.02, 0.0),
    )
}


class CloudWatchPricing(StrictModel):
    """CloudWatch API list prices the cost self-metrics and `plan` use (one table; override for your region)."""

    per_1000_metrics_requested: float = Field(
        default=0.01, ge=0, le=100, description="GetMetricData, dollars per 1,000 metrics requested"
    )
    per_1000_requests: float = Field(
        default=0.01, ge=0, le=100, description="ListMetrics and other requests, dollars per 1,000 requests"
    )

    @property
    def per_metric_and_request(self) -> tuple[float, float]:
        """(dollars per metric requested, dollars per request)."""
        return self.per_1000_metrics_requested / 1000, self.per_1000_requests / 1000


class PricingConfig(StrictModel):
    """Token prices exported as series, so spend per model is one PromQL join away."""

    batch_discount: float = Field(
        default=0.5, ge=0, le=1, description="batch price = on-demand price x (1 - batch_discount)"
    )
    include_defaults: bool = Field(default=True, description="start from the shipped price table")
    models: dict[Key, ModelPrice] = Field(default_factory=dict, description="model id -> on-demand prices")
    aliases: dict[Key, str] = Field(
        default_factory=dict,
        description="model id as CloudWatch or the job API reports it (e.g. an application inference-profile ARN, "
        "which does not name its model) -> the model id whose price applies",
    )
    cloudwatch: CloudWatchPricing = Field(
        default_factory=CloudWatchPricing, description="CloudWatch API prices for the cost self-metrics and plan"
    )

    def batch_prices(self) -> dict[str, ModelPrice]:
        """Batch prices per model id: the shipped table (if included) overridden by `models`, discounted."""
        table = {**(DEFAULT_PRICES if self.include_defaults else {}), **self.models}
        keep = 1.0 - self.batch_discount
        return {
            m: ModelPrice(input=p.input * keep, output=p.output * keep, source=p.source)
            for m, p in sorted(table.items())
        }


# Paths the HTTP server answers itself (exporter.http); the metrics path may not be one of them.
BUILTIN_PATHS = ("/", "/healthz", "/readyz", "/api/status", "/-/reload", "/runbooks")


class ServerConfig(StrictModel):
    """The HTTP endpoint Prometheus scrapes."""

    listen_address: str = Field(
        default="0.0.0.0:9816",
        pattern=r"^(\[[0-9a-fA-F:]+\]|[^\s:]*):\d{1,5}$",
        description="HOST:PORT, port 0-65535 (0: a free port chosen at start-up, for tests)",
    )
    metrics_path: str = Field(
        default="/metrics",
        pattern=r"^/[\w./-]*$",
        description="path of the Prometheus exposition; not one of the built-in paths (/, /healthz, /readyz, ...)",
    )
    web_config_file: str | None = Field(
        default=None, description="TLS and basic-auth settings (exporter-toolkit style), read at start-up"
    )
    enable_reload: bool = Field(
        default=False,
        description="accept POST /-/reload to re-read the config file (off by default, like Prometheus' "
        "--web.enable-lifecycle; SIGHUP always reloads)",
    )

    @field_validator("listen_address")
    @classmethod
    def _port_in_range(cls, value: str) -> str:
        port = int(value.rpartition(":")[2])
        if port > 65535:
            raise ValueError(f"port {port} is outside 0-65535")
        return value

    @field_validator("metrics_path")
    @classmethod
    def _not_builtin(cls, value: str) -> str:
        for path in BUILTIN_PATHS:
            if value == path or (path != "/" and value.startswith(path + "/")):
                raise ValueError(f"{value!r} is a built-in path of the exporter ({', '.join(BUILTIN_PATHS)})")
        return value


class OtlpConfig(StrictModel):
    """Where and how metrics are pushed over OTLP; unset fields follow the standard OTEL_* environment variables."""

    endpoint: Endpoint | None = Field(
        default=None,
        description="receiver base URL (port 1-65535, no user:password@: put credentials in headers), e.g. "
        "http://collector:4318 (/v1/metrics is appended for http/protobuf); unset: "
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318",
    )
    protocol: Literal["http/protobuf", "grpc"] | None = Field(
        default=None,
        description="unset: OTEL_EXPORTER_OTLP_METRICS_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf",
    )
    interval: Interval | None = Field(
        default=None,
        description="how often metrics are pushed (1s to 1d); unset: OTEL_METRIC_EXPORT_INTERVAL, else 60s",
    )
    timeout: Timeout | None = Field(
        default=None,
        description="limit of one push, retries included (more than 0, at most 10m); unset: "
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT or OTEL_EXPORTER_OTLP_TIMEOUT, else 10s",
    )
    headers: dict[Key, SecretStr] = Field(
        default_factory=dict,
        description="extra request headers (e.g. authorization: ${OTLP_TOKEN}), added to OTEL_EXPORTER_OTLP_HEADERS; "
        "never logged",
    )
    compression: Literal["gzip", "none"] | None = Field(
        default=None, description="unset: OTEL_EXPORTER_OTLP_METRICS_COMPRESSION or OTEL_EXPORTER_OTLP_COMPRESSION"
    )
    resource_attributes: dict[Key, str] = Field(
        default_factory=dict,
        description="resource attributes over the defaults (service.name, service.version, service.instance.id, "
        "cloud.provider) and OTEL_RESOURCE_ATTRIBUTES",
    )

    def resolved_protocol(self) -> str:
        """The protocol the OTLP sink uses: this config's, else the standard OTEL_* variables, else http/protobuf."""
        return (
            self.protocol
            or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # Values may be secrets: a problem names the header and the kind of problem, never the value.
        for name, secret in value.items():
            if not _HEADER_NAME_RE.match(name):
                raise ValueError(f"{name!r}: not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
            if _HEADER_VALUE_BAD_RE.search(secret.get_secret_value()):
                raise ValueError(
                    f"{name!r}: the value contains a control character (CR, LF, NUL, ...); it is not shown here"
                )
        return value


# The sinks a config may name; a third one is a file in exporter/sinks/ plus its name here and in exporter.app.
SinkName = Literal["prometheus", "otlp"]
MODE_SINKS: dict[str, tuple[SinkName, ...]] = {
    "prometheus": ("prometheus",),
    "otlp": ("otlp",),
    "both": ("prometheus", "otlp"),
}


class Config(StrictModel):
    """The whole configuration file."""

    sinks: tuple[SinkName, ...] | None = Field(
        default=None,
        min_length=1,
        description="where the metrics go: prometheus (serve /metrics and the status page) and/or otlp (push; "
        "without prometheus, HTTP serves only /healthz and /readyz); default [prometheus]",
    )
    mode: Literal["prometheus", "otlp", "both"] | None = Field(
        default=None,
        description="the older spelling of sinks: prometheus = [prometheus], otlp = [otlp], both = [prometheus, otlp]",
    )
    otlp: OtlpConfig = Field(default_factory=OtlpConfig, description="used when sinks include otlp")
    server: ServerConfig = Field(default_factory=ServerConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    targets: tuple[TargetConfig, ...] = Field(min_length=1)
    namespaces: tuple[NamespaceConfig, ...] = Field(
        default_factory=lambda: (NamespaceConfig(namespace=BEDROCK_BATCH_NAMESPACE),),
        min_length=1,
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.sinks is not None:
            if len(set(self.sinks)) != len(self.sinks):
                raise ValueError("sinks: a sink is listed more than once")
            if self.mode is not None and set(self.sinks) != set(MODE_SINKS[self.mode]):
                raise ValueError(f"mode: {self.mode!r} says other sinks than 'sinks'; keep only sinks")
        names = [n.namespace for n in self.namespaces]
        if len(set(names)) != len(names):
            raise ValueError("a namespace is listed more than once")
        labels = [t.label for t in self.targets]
        for i, label in enumerate(labels):
            if label in labels[:i]:
                raise ValueError(f"targets[{i}]: another target is also called {label!r}; give each a distinct name")
        for i, target in enumerate(self.targets):
            for ns in target.namespaces or ():
                if ns not in names:
                    raise ValueError(f"targets[{i}].namespaces: {ns!r} is not configured under 'namespaces'")
        seen: dict[str, int] = {}
        for i, ns_config in enumerate(self.namespaces):
            for j, query in enumerate(ns_config.insights):
                if query.name in seen and seen[query.name] != i:
                    raise ValueError(
                        f"namespaces[{i}].insights[{j}].name: {query.name!r} is already used in "
                        f"namespaces[{seen[query.name]}]; names must be unique across namespaces"
                    )
                seen[query.name] = i
        return self

    @property
    def enabled_sinks(self) -> frozenset[str]:
        """The sinks in use: `sinks`, else what `mode` says, else prometheus alone."""
        if self.sinks is not None:
            return frozenset(self.sinks)
        return frozenset(MODE_SINKS[self.mode or "prometheus"])

    def namespaces_for(self, target: TargetConfig) -> tuple[NamespaceConfig, ...]:
        if target.namespaces is None:
            return self.namespaces
        return tuple(n for n in self.namespaces if n.namespace in target.namespaces)
