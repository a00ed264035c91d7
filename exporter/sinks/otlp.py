"""The OTLP sink: pushes the Snapshot and the self-metrics to an OpenTelemetry receiver on a fixed interval.

Each push is built straight from `Store.snapshot` (and the self-metrics registry), the same data `/metrics` renders,
as OpenTelemetry SDK metric data handed to the SDK's OTLP exporter. We do not route the values through SDK
observable instruments: the SDK keeps every attribute set an asynchronous instrument ever reported for the life of
the process (2,000 per instrument, then `otel.metric.overflow`), and per-job series come and go, so a long-running
exporter would grow and then mislabel its data. A snapshot-built push holds only the series that exist now.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics import ObservableCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, Counter

from exporter import __version__, families
from exporter.config import Config, NamespaceConfig, OtlpConfig, defaults_for
from exporter.families import Sample
from exporter.model import CloudWatchValue
from exporter.naming import metric_name, otel_metric_name
from exporter.selfmetrics import PREFIX
from exporter.snapshot import Snapshot, Store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0  # seconds, as the SDK's OTEL_METRIC_EXPORT_INTERVAL default
DEFAULT_TIMEOUT = 10.0  # seconds, as the SDK's OTEL_EXPORTER_OTLP_TIMEOUT default
METRICS_PATH = "/v1/metrics"
SCOPE = InstrumentationScope("bedrock-batch-exporter", __version__)
# Only the exporter's own families are pushed; process_* and python_* stay Prometheus-only (OpenTelemetry has its
# own runtime and host metrics with their own names).
_PUSHED_SELF_PREFIXES = ("bedrock_batch_",)


@dataclass(frozen=True)
class OtelName:
    """The OpenTelemetry name and UCUM unit of one Prometheus family."""

    name: str
    unit: str


# Chosen so that an OTel-to-Prometheus translation (dots -> `_`, unit suffix, `_total`) gives back the /metrics name
# wherever OpenTelemetry style allows; docs/otlp.md lists both side by side.
FIXED_NAMES: dict[str, OtelName] = {
    "bedrock_batch_jobs": OtelName("bedrock_batch.jobs", "{job}"),
    "bedrock_batch_jobs_finished": OtelName("bedrock_batch.jobs.finished", "{job}"),
    "bedrock_batch_job_info": OtelName("bedrock_batch.job.info", ""),
    "bedrock_batch_job_failure_info": OtelName("bedrock_batch.job.failure_info", ""),
    "bedrock_batch_model_queue_wait_seconds": OtelName("bedrock_batch.model.queue_wait", "s"),
    "bedrock_batch_job_queue_wait_seconds": OtelName("bedrock_batch.job.queue_wait", "s"),
    "bedrock_batch_job_input_records": OtelName("bedrock_batch.job.input_records", "{record}"),
    "bedrock_batch_job_processed_records": OtelName("bedrock_batch.job.processed_records", "{record}"),
    "bedrock_batch_job_succeeded_records": OtelName("bedrock_batch.job.succeeded_records", "{record}"),
    "bedrock_batch_job_failed_records": OtelName("bedrock_batch.job.failed_records", "{record}"),
    "bedrock_batch_job_submit_timestamp_seconds": OtelName("bedrock_batch.job.submit_timestamp", "s"),
    "bedrock_batch_job_expiration_timestamp_seconds": OtelName("bedrock_batch.job.expiration_timestamp", "s"),
    "bedrock_batch_job_end_timestamp_seconds": OtelName("bedrock_batch.job.end_timestamp", "s"),
    "bedrock_batch_job_input_tokens": OtelName("bedrock_batch.job.input_tokens", "{token}"),
    "bedrock_batch_job_output_tokens": OtelName("bedrock_batch.job.output_tokens", "{token}"),
    "bedrock_batch_job_cost_dollars": OtelName("bedrock_batch.job.cost", "{USD}"),
    "bedrock_batch_job_eta_seconds": OtelName("bedrock_batch.job.eta", "s"),
    "bedrock_batch_model_drain_eta_seconds": OtelName("bedrock_batch.model.drain_eta", "s"),
    "bedrock_batch_model_processed_records_per_second": OtelName("bedrock_batch.model.processed_records", "{record}/s"),
    "bedrock_batch_finished_jobs_input_tokens": OtelName("bedrock_batch.finished_jobs.input_tokens", "{token}"),
    "bedrock_batch_finished_jobs_output_tokens": OtelName("bedrock_batch.finished_jobs.output_tokens", "{token}"),
    "bedrock_batch_finished_jobs_cost_dollars": OtelName("bedrock_batch.finished_jobs.cost", "{USD}"),
    "bedrock_batch_finished_jobs_cost_by_tag_dollars": OtelName("bedrock_batch.finished_jobs.cost_by_tag", "{USD}"),
    "bedrock_batch_model_input_price_dollars_per_million_tokens": OtelName(
        "bedrock_batch.model.input_price", "{USD}/10*6{token}"
    ),
    "bedrock_batch_model_output_price_dollars_per_million_tokens": OtelName(
        "bedrock_batch.model.output_price", "{USD}/10*6{token}"
    ),
    "bedrock_batch_quota_concurrent_jobs_limit": OtelName("bedrock_batch.quota.concurrent_jobs.limit", "{job}"),
    "bedrock_batch_quota_concurrent_jobs": OtelName("bedrock_batch.quota.concurrent_jobs", "{job}"),
    "bedrock_batch_quota_waiting_jobs": OtelName("bedrock_batch.quota.waiting_jobs", "{job}"),
    "bedrock_batch_quota_records_per_job_limit": OtelName("bedrock_batch.quota.records_per_job.limit", "{record}"),
    "bedrock_batch_quota_unmatched": OtelName("bedrock_batch.quota.unmatched", "{quota}"),
    f"{PREFIX}_build_info": OtelName(f"{PREFIX}.build_info", ""),
    f"{PREFIX}_up": OtelName(f"{PREFIX}.up", ""),
    f"{PREFIX}_last_success_timestamp_seconds": OtelName(f"{PREFIX}.last_success_timestamp", "s"),
    f"{PREFIX}_data_age_seconds": OtelName(f"{PREFIX}.data_age", "s"),
    f"{PREFIX}_newest_datapoint_age_seconds": OtelName(f"{PREFIX}.newest_datapoint_age", "s"),
    f"{PREFIX}_series": OtelName(f"{PREFIX}.series", "{series}"),
    f"{PREFIX}_consecutive_failures": OtelName(f"{PREFIX}.consecutive_failures", "{failure}"),
    f"{PREFIX}_polling_active": OtelName(f"{PREFIX}.polling_active", ""),
    f"{PREFIX}_cycles": OtelName(f"{PREFIX}.cycles", "{cycle}"),
    f"{PREFIX}_cycles_overrun": OtelName(f"{PREFIX}.cycles.overrun", "{cycle}"),
    f"{PREFIX}_cycle_duration_seconds": OtelName(f"{PREFIX}.cycle.duration", "s"),
    f"{PREFIX}_discovery_errors": OtelName(f"{PREFIX}.discovery.errors", "{error}"),
    f"{PREFIX}_aws_api_requests": OtelName(f"{PREFIX}.aws.api.requests", "{request}"),
    f"{PREFIX}_aws_api_retries": OtelName(f"{PREFIX}.aws.api.retries", "{retry}"),
    f"{PREFIX}_cloudwatch_metrics_requested": OtelName(f"{PREFIX}.cloudwatch.metrics_requested", "{metric}"),
    f"{PREFIX}_cloudwatch_api_cost_dollars": OtelName(f"{PREFIX}.cloudwatch.api_cost", "{USD}"),
    f"{PREFIX}_cloudwatch_result_errors": OtelName(f"{PREFIX}.cloudwatch.result_errors", "{result}"),
    f"{PREFIX}_aws_unknown_values": OtelName(f"{PREFIX}.aws.unknown_values", "{value}"),
    f"{PREFIX}_series_dropped": OtelName(f"{PREFIX}.series.dropped", "{series}"),
    f"{PREFIX}_series_not_polled": OtelName(f"{PREFIX}.series.not_polled", "{series}"),
    f"{PREFIX}_manifest_reads": OtelName(f"{PREFIX}.manifest.reads", "{read}"),
    f"{PREFIX}_manifests_missing": OtelName(f"{PREFIX}.manifests.missing", "{manifest}"),
    f"{PREFIX}_tag_values_dropped": OtelName(f"{PREFIX}.tag_values.dropped", "{value}"),
    f"{PREFIX}_otlp_exports": OtelName(f"{PREFIX}.otlp.exports", "{export}"),
    f"{PREFIX}_otlp_export_failures": OtelName(f"{PREFIX}.otlp.export.failures", "{failure}"),
}

# Prometheus label -> data-point attribute. Account and region are data-point attributes, not resource attributes,
# because one exporter reads many accounts and regions.
ATTRIBUTE_NAMES: dict[str, str] = {
    "account_id": "cloud.account.id",
    "region": "cloud.region",
    "namespace": "aws.cloudwatch.namespace",
    "dimension_ModelId": "aws.bedrock.model_id",
    "model_id": "aws.bedrock.model_id",
    "job_arn": "aws.bedrock.job.arn",
    "job_name": "aws.bedrock.job.name",
    "status": "aws.bedrock.job.status",
    "invocation_type": "aws.bedrock.job.invocation_type",
    "operation": "rpc.method",
    "status_code": "aws.cloudwatch.status_code",
    "field": "aws.field",
}


def attribute_name(label: str) -> str:
    """`account_id` -> `cloud.account.id`, `dimension_X` -> `aws.cloudwatch.dimension.X`, others unchanged."""
    known = ATTRIBUTE_NAMES.get(label)
    if known is not None:
        return known
    if label.startswith("dimension_"):
        return "aws.cloudwatch.dimension." + label.removeprefix("dimension_")
    return label


def cloudwatch_name(namespace: str, metric: str, statistic: str) -> OtelName:
    """`aws.bedrock.batch.number_of_records_pending_processing.maximum` and its unit (the namespace table's)."""
    unit = "{datapoint}" if statistic == "SampleCount" else defaults_for(namespace).units.get(metric, "")
    return OtelName(otel_metric_name(namespace, metric, statistic), unit)


def cloudwatch_names(namespaces: Iterable[NamespaceConfig]) -> dict[str, OtelName]:
    """Prometheus name -> OTel name for every configured CloudWatch metric and statistic (for docs and tests)."""
    return {
        metric_name(ns.namespace, metric.name, stat): cloudwatch_name(ns.namespace, metric.name, stat)
        for ns in namespaces
        for metric in ns.resolved_metrics()
        for stat in metric.statistics
    }


def otel_name(prometheus_name: str, known: Mapping[str, OtelName]) -> OtelName:
    """The mapped name, or for a family not in the table the Prometheus name with its base-unit suffix as unit."""
    found = known.get(prometheus_name)
    if found is not None:
        return found
    for suffix, unit in (("_seconds", "s"), ("_bytes", "By")):
        if prometheus_name.endswith(suffix):
            return OtelName(prometheus_name.removesuffix(suffix), unit)
    return OtelName(prometheus_name, "")


def metrics_url(endpoint: str) -> str:
    """A base URL (as OTEL_EXPORTER_OTLP_ENDPOINT) gets `/v1/metrics`; a URL already ending in it is kept."""
    stripped = endpoint.rstrip("/")
    return stripped if stripped.endswith(METRICS_PATH) else stripped + METRICS_PATH


def redacted(url: str) -> str:
    """The URL without user info or query, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def build_resource(config: OtlpConfig) -> Resource:
    """SDK attributes < our defaults < OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME < `otlp.resource_attributes`."""
    defaults = {
        "service.name": "bedrock-batch-exporter",
        "service.version": __version__,
        "service.instance.id": socket.gethostname(),
        "cloud.provider": "aws",
    }
    detected = OTELResourceDetector().detect()
    return Resource.create(defaults).merge(detected).merge(Resource(dict(config.resource_attributes)))


def _env_seconds(name: str, default: float) -> float:
    """An SDK environment variable given in milliseconds, as seconds."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text) / 1000
    except ValueError:
        log.warning("ignoring %s=%r: not a number of milliseconds", name, text)
        return default
    return value if value > 0 else default


class OtlpUnavailableError(ValueError):
    """The configured OTLP protocol needs a package that is not installed, or is unknown."""


def build_exporter(config: OtlpConfig) -> MetricExporter:
    """The SDK's OTLP metric exporter; fields left unset fall back to the OTEL_EXPORTER_OTLP_* variables."""
    protocol = config.resolved_protocol()
    # gRPC metadata keys must be lower case (HTTP header names are case-insensitive, so lower case suits both).
    headers = {name.lower(): value.get_secret_value() for name, value in config.headers.items()} or None
    if protocol == "grpc":
        try:
            grpc = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.metric_exporter")
        except ImportError:
            raise OtlpUnavailableError(
                "otlp.protocol grpc needs the gRPC exporter: pip install 'bedrock-batch-exporter[otlp-grpc]'"
            ) from None
        gzip = importlib.import_module("grpc").Compression.Gzip
        exporter: MetricExporter = grpc.OTLPMetricExporter(
            endpoint=config.endpoint,
            headers=headers,
            timeout=config.timeout,
            compression=gzip if config.compression == "gzip" else None,
        )
        return exporter
    if protocol != "http/protobuf":
        raise OtlpUnavailableError(f"OTLP protocol {protocol!r} is not supported: use http/protobuf or grpc")
    return OTLPMetricExporter(
        endpoint=metrics_url(config.endpoint) if config.endpoint else None,
        headers=headers,
        timeout=config.timeout,
        compression=Compression(config.compression) if config.compression else None,
    )


_Key = tuple[str, tuple[tuple[str, str], ...]]  # (family, labels) of one cumulative stream


@dataclass(frozen=True)
class _Cumulative:
    """What a counter or histogram stream had reached at one export, to turn the next one into a delta."""

    time_ns: int
    value: float
    bucket_counts: tuple[int, ...] = ()


class OtlpSink:
    """Pushes what `/metrics` shows to an OTLP receiver every `interval`; failures are counted, never raised."""

    def __init__(
        self,
        config: Config,
        store: Store,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        exporter: MetricExporter | None = None,
    ) -> None:
        otlp = config.otlp
        self._store = store
        self._registry = registry
        self._clock = clock
        self._exporter = exporter or build_exporter(otlp)
        self.resource = build_resource(otlp)
        self.interval = otlp.interval or _env_seconds("OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_INTERVAL)
        self.timeout = otlp.timeout or DEFAULT_TIMEOUT
        self.endpoint = redacted(str(getattr(self._exporter, "_endpoint", otlp.endpoint or "")))
        temporality: Mapping[type, AggregationTemporality] = getattr(self._exporter, "_preferred_temporality", {})
        # Our counters and histogram mirror totals, as an asynchronous counter would; the SDK's
        # OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE decides cumulative or delta for each kind.
        self._counter_temporality = temporality.get(ObservableCounter, AggregationTemporality.CUMULATIVE)
        self._histogram_temporality = temporality.get(HistogramInstrument, AggregationTemporality.CUMULATIVE)
        self._start_ns = int(clock() * 1e9)
        self._previous: dict[_Key, _Cumulative] = {}
        self._failing = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.exports = Counter(
            f"{PREFIX}_otlp_exports",
            "OTLP pushes attempted (each one retries inside its timeout).",
            registry=registry,
        )
        self.failures = Counter(
            f"{PREFIX}_otlp_export_failures",
            "OTLP pushes that failed after their retries (receiver down, slow or refusing); that push is dropped.",
            registry=registry,
        )

    def collect(self) -> tuple[MetricsData, dict[_Key, _Cumulative]]:
        """One push's data from the current Snapshot and self-metrics, and the cumulative state it reaches."""
        now_ns = int(self._clock() * 1e9)
        reached: dict[_Key, _Cumulative] = {}
        metrics = [
            *self._snapshot_metrics(self._store.snapshot, now_ns, reached),
            *self._registry_metrics(now_ns, reached),
        ]
        scope = ScopeMetrics(scope=SCOPE, metrics=metrics, schema_url="")
        data = MetricsData([ResourceMetrics(resource=self.resource, scope_metrics=[scope], schema_url="")])
        return data, reached

    def export(self) -> bool:
        """Push once now; True if the receiver took it."""
        with self._lock:
            self.exports.inc()
            try:
                data, reached = self.collect()
                result = self._exporter.export(data, timeout_millis=self.timeout * 1000)
            except Exception:  # the loop must survive a bug in collecting or exporting; the failure is counted
                log.exception("OTLP push failed unexpectedly")
                result = MetricExportResult.FAILURE
            if result is MetricExportResult.SUCCESS:
                self._previous = reached
                if self._failing:
                    log.info("OTLP push to %s works again", self.endpoint)
                self._failing = False
                return True
            self.failures.inc()
            if not self._failing:
                log.warning(
                    "OTLP push to %s failed; retrying every %gs (%s_otlp_export_failures_total counts failures)",
                    self.endpoint,
                    self.interval,
                    PREFIX,
                )
            self._failing = True
            return False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otlp", daemon=True)
        self._thread.start()
        log.info("pushing metrics over OTLP to %s every %gs", self.endpoint, self.interval)

    def stop(self) -> None:
        """Stop the loop, push the last values once (bounded by the timeout), release the exporter."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
            self._thread = None
            self.export()
        self._exporter.shutdown()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.export()

    def _snapshot_metrics(self, snapshot: Snapshot, now_ns: int, reached: dict[_Key, _Cumulative]) -> list[Metric]:
        """The Snapshot's records under OpenTelemetry names: CloudWatch values named from their own parts (so a
        namespace added by a reload is named like one configured at start), built-in families from FIXED_NAMES."""
        rows: dict[str, tuple[OtelName, str, str, list[Sample]]] = {}

        def add(name: OtelName, description: str, kind: str, sample: Sample) -> None:
            entry = rows.get(name.name)
            if entry is None:
                entry = rows[name.name] = (name, description, kind, [])
            entry[3].append(sample)

        def add_builtin(found: Iterable[Sample]) -> None:
            for sample in found:
                family = sample.family
                add(FIXED_NAMES.get(family.name, OtelName(family.name, "")), family.help, family.kind, sample)

        add_builtin(families.price_samples(snapshot.prices, families.model_ids(snapshot.tasks.values())))
        prices = snapshot.price_table
        for state in snapshot.tasks.values():
            for record, sample in families.record_samples(state):
                if isinstance(record, CloudWatchValue):
                    series = record.series
                    name = cloudwatch_name(series.namespace, series.metric, record.statistic)
                else:
                    name = OtelName(record.query, "")
                add(name, sample.family.help, "gauge", sample)
            add_builtin(families.job_samples(state, prices))
        metrics = []
        for name, description, kind, members in rows.values():
            if kind == "counter":
                points = [self._sum_point(name.name, s.labels, s.value, now_ns, reached) for s in members]
                data: Gauge | Sum = self._sum(points)
            else:
                data = Gauge(
                    data_points=[
                        NumberDataPoint(
                            attributes=_attributes(s.labels),
                            start_time_unix_nano=0,
                            time_unix_nano=int(s.timestamp * 1e9) if s.timestamp is not None else now_ns,
                            value=float(s.value),
                        )
                        for s in members
                    ]
                )
            metrics.append(Metric(name=name.name, description=description, unit=name.unit, data=data))
        return metrics

    def _registry_metrics(self, now_ns: int, reached: dict[_Key, _Cumulative]) -> Iterator[Metric]:
        for family in self._registry.collect():
            if not family.name.startswith(_PUSHED_SELF_PREFIXES):
                continue
            if family.type == "counter":
                points = [
                    self._sum_point(family.name, _labels(s.labels), s.value, now_ns, reached)
                    for s in family.samples
                    if s.name == f"{family.name}_total"
                ]
                yield self._metric(family.name, family.documentation, self._sum(points))
            elif family.type in ("gauge", "unknown"):
                gauge = [
                    NumberDataPoint(_attributes(_labels(s.labels)), 0, now_ns, float(s.value)) for s in family.samples
                ]
                yield self._metric(family.name, family.documentation, Gauge(data_points=gauge))
            elif family.type == "histogram":
                yield self._metric(family.name, family.documentation, self._histogram(family, now_ns, reached))

    def _histogram(self, family: Any, now_ns: int, reached: dict[_Key, _Cumulative]) -> Histogram:
        """Prometheus cumulative `le` buckets -> OTLP explicit-bound buckets (per bucket counts)."""
        series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for sample in family.samples:
            labels = _labels({k: v for k, v in sample.labels.items() if k != "le"})
            entry = series.setdefault(labels, {"buckets": [], "count": 0.0, "sum": 0.0})
            if sample.name.endswith("_bucket"):
                entry["buckets"].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                entry["count"] = sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
        delta = self._histogram_temporality is AggregationTemporality.DELTA
        points = []
        for labels, entry in series.items():
            buckets = sorted(entry["buckets"])
            cumulative = [int(count) for _, count in buckets]
            counts = tuple(c - p for c, p in zip(cumulative, [0, *cumulative[:-1]], strict=True))
            bounds = [bound for bound, _ in buckets if not math.isinf(bound)]
            total, count = float(entry["sum"]), int(entry["count"])
            key = (family.name, labels)
            reached[key] = _Cumulative(now_ns, total, counts)
            start = self._start_ns
            previous = self._previous.get(key)
            if delta and previous is not None:
                start, total = previous.time_ns, total - previous.value
                counts = tuple(c - p for c, p in zip(counts, previous.bucket_counts, strict=False))
                count = sum(counts)
            points.append(
                HistogramDataPoint(
                    attributes=_attributes(labels),
                    start_time_unix_nano=start,
                    time_unix_nano=now_ns,
                    count=count,
                    sum=total,
                    bucket_counts=list(counts),
                    explicit_bounds=bounds,
                    min=None,  # type: ignore[arg-type]  # Prometheus histograms keep no min/max; OTLP allows none
                    max=None,  # type: ignore[arg-type]
                )
            )
        return Histogram(data_points=points, aggregation_temporality=self._histogram_temporality)

    def _sum_point(
        self,
        family: str,
        labels: tuple[tuple[str, str], ...],
        value: float,
        now_ns: int,
        reached: dict[_Key, _Cumulative],
    ) -> NumberDataPoint:
        key = (family, labels)
        reached[key] = _Cumulative(now_ns, value)
        start, shown = self._start_ns, value
        previous = self._previous.get(key)
        if self._counter_temporality is AggregationTemporality.DELTA and previous is not None:
            start, shown = previous.time_ns, value - previous.value
        return NumberDataPoint(_attributes(labels), start, now_ns, float(shown))

    def _sum(self, points: list[NumberDataPoint]) -> Sum:
        return Sum(data_points=points, aggregation_temporality=self._counter_temporality, is_monotonic=True)

    def _metric(self, prometheus_name: str, description: str, data: Gauge | Sum | Histogram) -> Metric:
        name = otel_name(prometheus_name, FIXED_NAMES)
        return Metric(name=name.name, description=description, unit=name.unit, data=data)


def _labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _attributes(labels: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {attribute_name(label): value for label, value in labels}
