"""The exporter's own metrics: AWS calls and their cost, cycles, health and data age per task."""

from __future__ import annotations

import functools
import logging
import platform
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.snapshot import Store

PREFIX = "bedrock_batch_exporter"
SAMPLE_PERIOD = 1.0  # seconds between readings of the process metrics (SampledCollector)

log = logging.getLogger(__name__)

# CloudWatch list prices (us-east-1, checked 2026): GetMetricData is billed per metric requested and is never in
# the free tier; other API requests are billed per 1,000 requests after 1 million free requests a month. We count
# every request as paid, so the estimate is an upper bound. `pricing.cloudwatch` in the config overrides them.
PRICE_PER_METRIC_REQUESTED = 0.01 / 1000
PRICE_PER_REQUEST = 0.01 / 1000
PRICE_SOURCE = (
    "Amazon CloudWatch pricing page, us-east-1 list prices, checked 2026; GetMetricData is billed per metric "
    "requested and has no free tier; ListMetrics per 1,000 requests after 1 million free requests a month, counted "
    "here as paid (upper bound)"
)
HOURS_PER_MONTH = 730  # AWS's price examples count a month as 730 hours
_BILLED_PER_REQUEST = {"ListMetrics", "GetMetricStatistics"}

_TASK_LABELS = ("account_id", "region", "namespace")


class SelfMetrics:
    """Owns the registry of the exporter's own metrics; its counters are fed by the AWS layer and the poller."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        prices: tuple[float, float] = (PRICE_PER_METRIC_REQUESTED, PRICE_PER_REQUEST),
    ) -> None:
        # (dollars per metric requested, dollars per request); a reload may replace them
        self.prices = prices
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series only add bulk
        self.registry = CollectorRegistry(auto_describe=False)
        # process_* metrics are read by a sampler thread, not by the scrape (SampledCollector); start_sampling
        self.process = SampledCollector(PROCESS_COLLECTOR, SAMPLE_PERIOD)
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()
        for collector in (self.process, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        counter = functools.partial(Counter, registry=self.registry)
        histogram = functools.partial(Histogram, registry=self.registry)
        gauge = functools.partial(Gauge, registry=self.registry)
        self.api_requests = counter(
            f"{PREFIX}_aws_api_requests",
            "AWS API calls by operation and outcome (after botocore retries).",
            ["account_id", "region", "operation", "outcome"],
        )
        self.api_retries = counter(
            f"{PREFIX}_aws_api_retries",
            "Retries botocore made inside AWS API calls.",
            ["account_id", "region", "operation"],
        )
        self.bad_answers = counter(
            f"{PREFIX}_aws_bad_answers",
            "AWS answers that arrived but could not be used (malformed, truncated, inconsistent).",
            ["account_id", "region", "operation"],
        )
        self.bad_records = counter(
            f"{PREFIX}_aws_bad_records",
            "Records of an AWS answer skipped as malformed (e.g. a job summary whose time is not a date or out of "
            "range); the rest of the answer is used.",
            ["account_id", "region", "operation", "member", "reason"],
        )
        self.jobs_dropped = counter(
            f"{PREFIX}_jobs_dropped",
            "Jobs not exported because the region had more than jobs.max_jobs (oldest finished first; kind=running "
            "means unfinished jobs were dropped too, with a warning on the status page).",
            ["account_id", "region", "kind"],
        )
        self.tag_values_dropped = counter(
            f"{PREFIX}_tag_values_dropped",
            "Job tag values (jobs.tag_labels) not exported, by reason: invalid (characters AWS's model does not "
            "allow), too_long (over 128 characters), cardinality (over 100 distinct values of a key); the job counts "
            "as untagged.",
            ["account_id", "region", "reason"],
        )
        self.result_errors = counter(
            f"{PREFIX}_cloudwatch_result_errors",
            "GetMetricData results that were errors (StatusCode other than Complete, without datapoints), by status "
            "code; their series keep their last value for a few intervals, then disappear.",
            (*_TASK_LABELS, "status_code"),
        )
        self.unknown_values = counter(
            f"{PREFIX}_aws_unknown_values",
            "Values AWS sent that the SDK's model does not list (e.g. a new job status); exported as sent.",
            ["account_id", "region", "operation", "field"],
        )
        self.series_dropped = counter(
            f"{PREFIX}_series_dropped",
            "Series not exported because another series had the same name and labels (e.g. dimension names that "
            "map to one label); the first one in a stable order is kept.",
        )
        self.manifest_reads = counter(
            f"{PREFIX}_manifest_reads",
            "Reads of finished jobs' manifest.json.out by outcome (ok, access_denied, not_found, kms_denied, "
            "malformed, too_large, error); failed reads are retried with backoff.",
            ["account_id", "region", "outcome"],
        )
        self.manifests_missing = counter(
            f"{PREFIX}_manifests_missing",
            "Finished jobs whose manifest could not be read before the retry limit: no tokens or cost exported.",
            ["account_id", "region"],
        )
        self.metrics_requested = counter(
            f"{PREFIX}_cloudwatch_metrics_requested",
            "Metrics requested through GetMetricData (what CloudWatch bills).",
            ["account_id", "region"],
        )
        self.api_cost = counter(
            f"{PREFIX}_cloudwatch_api_cost_dollars",
            "Estimated CloudWatch API spend in US dollars at list prices (upper bound: ignores the free tier).",
            ["account_id", "region"],
        )
        self.cycle_duration = histogram(
            f"{PREFIX}_cycle_duration_seconds",
            "Duration of one poll cycle of a namespace in a region.",
            _TASK_LABELS,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
        )
        # Not a health metric, but a histogram: it lives in this registry, which prometheus-client renders
        self.queue_wait = histogram(
            "bedrock_batch_model_queue_wait_seconds",
            "Time from submission to InProgress of the jobs seen entering InProgress, per model: a lower bound "
            "(submission to the last listing that saw the job still waiting); jobs first seen running are not "
            "observed (docs/metrics.md).",
            ["account_id", "region", "model_id"],
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800, 604800),
        )
        self.cycles = counter(
            f"{PREFIX}_cycles",
            "Poll cycles by outcome (success or error).",
            (*_TASK_LABELS, "outcome"),
        )
        self.cycles_overrun = counter(
            f"{PREFIX}_cycles_overrun",
            "Poll cycles that took longer than their interval, so the next one started late.",
            _TASK_LABELS,
        )
        self.discovery_errors = counter(
            f"{PREFIX}_discovery_errors",
            "ListMetrics refreshes that failed; the previous discovery stays in use.",
            _TASK_LABELS,
        )
        self.reload_successful = gauge(
            f"{PREFIX}_config_last_reload_successful",
            "1 if the last config reload succeeded (or none was tried), 0 if it was refused.",
        )
        self.reload_successful.set(1)
        self.reload_timestamp = gauge(
            f"{PREFIX}_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully (Unix time).",
        )
        self.reload_timestamp.set(clock())
        build = gauge(
            f"{PREFIX}_build_info",
            "Build information; always 1.",
            ["version", "python_version"],
        )
        build.labels(__version__, platform.python_version()).set(1)
        self.registry.register(_HealthCollector(store, clock))
        # every metric with an account_id label belongs to one target; forget() drops those of removed targets
        self._per_target = [
            metric
            for metric in vars(self).values()
            if isinstance(metric, Counter | Histogram) and "account_id" in metric._labelnames
        ]

    def forget(self, keep: Callable[[str, str, str | None], bool]) -> None:
        """Drop the series of (account, region[, namespace]) no longer polled after a reload, so /metrics shows
        exactly the new configuration. `keep(account_id, region, namespace)` decides; namespace is None for series
        without one (API calls, cost)."""
        for metric in self._per_target:
            names = metric._labelnames
            for values in list(metric._metrics):
                labels = dict(zip(names, values, strict=True))
                if not keep(labels["account_id"], labels["region"], labels.get("namespace")):
                    metric.remove(*values)

    def record_call(self, account_id: str, region: str, operation: str, outcome: str, retries: int) -> None:
        self.api_requests.labels(account_id, region, operation, outcome).inc()
        if retries:
            self.api_retries.labels(account_id, region, operation).inc(retries)
        if operation in _BILLED_PER_REQUEST:
            self.api_cost.labels(account_id, region).inc(self.prices[1] * (1 + retries))

    def start_sampling(self) -> None:
        """Read the process metrics every SAMPLE_PERIOD seconds in a thread of their own until stop_sampling."""
        if self._sampler is not None:
            return
        self._sampling.clear()
        self._sampler = threading.Thread(target=self._sample_loop, name="sample-process", daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> None:
        self._sampling.set()
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.join(2 * SAMPLE_PERIOD)

    def _sample_loop(self) -> None:
        while True:
            self.process.sample()
            if self._sampling.wait(SAMPLE_PERIOD):
                return

    def record_metrics_requested(self, account_id: str, region: str, count: int) -> None:
        self.metrics_requested.labels(account_id, region).inc(count)
        self.api_cost.labels(account_id, region).inc(self.prices[0] * count)


class SampledCollector(Collector):
    """Another collector's families as of its last `sample()`, so that a scrape does no I/O for them.

    prometheus-client's process collector opens and reads files under /proc on every collect. Each read gives the GIL
    up and then waits to take it back, which during a poll cycle costs the scrape about a millisecond each time
    (docs/performance.md). Here a sampler thread (SelfMetrics.start_sampling) reads them every `period` seconds and a
    scrape serves what it read, at most `period` old. When no reading is newer than three periods (no sampler, or a
    stalled one), collect() reads live as before. A reading that fails keeps the previous one (prometheus-client's
    own collector already leaves out what it cannot read).
    """

    def __init__(self, inner: Collector, period: float) -> None:
        self._inner = inner
        self._period = period
        self._read: tuple[float, list[Metric]] | None = None

    def sample(self) -> None:
        try:
            families = list(self._inner.collect())
        except Exception as exc:  # never let a /proc oddity end the sampler
            log.debug("reading process metrics failed: %s", exc)
            return
        self._read = (time.monotonic(), families)  # one assignment: a scrape sees the old reading or the new one

    def collect(self) -> Iterator[Metric]:
        read = self._read
        if read is None or time.monotonic() - read[0] > 3 * self._period:
            return iter(self._inner.collect())
        return iter(read[1])


class _HealthCollector(Collector):
    """Per-task health and freshness, computed from the Snapshot at scrape time (ages keep rising while AWS hangs)."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        snapshot = self._store.snapshot
        up = GaugeMetricFamily(f"{PREFIX}_up", "1 if the last poll cycle succeeded.", labels=_TASK_LABELS)
        last = GaugeMetricFamily(
            f"{PREFIX}_last_success_timestamp_seconds",
            "When the last poll cycle succeeded (Unix time).",
            labels=_TASK_LABELS,
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_data_age_seconds",
            "Seconds since the exported values were last refreshed from AWS.",
            labels=_TASK_LABELS,
        )
        newest = GaugeMetricFamily(
            f"{PREFIX}_newest_datapoint_age_seconds",
            "Seconds since the newest CloudWatch datapoint of the group (rises naturally while idle).",
            labels=_TASK_LABELS,
        )
        series = GaugeMetricFamily(f"{PREFIX}_series", "CloudWatch series currently exported.", labels=_TASK_LABELS)
        failures = GaugeMetricFamily(
            f"{PREFIX}_consecutive_failures", "Poll cycles failed in a row.", labels=_TASK_LABELS
        )
        not_polled = GaugeMetricFamily(
            f"{PREFIX}_series_not_polled",
            "Series ListMetrics found (or configured) that are not polled: over the namespace's discovery.max_series "
            "(whole dimension sets are dropped, the same ones each time).",
            labels=_TASK_LABELS,
        )
        active = GaugeMetricFamily(
            f"{PREFIX}_polling_active",
            "0 while job-aware polling skips CloudWatch because the region has no unfinished batch job.",
            labels=_TASK_LABELS,
        )
        for key, state in snapshot.tasks.items():
            labels = [state.account_id, key.region, key.namespace]
            up.add_metric(labels, 1.0 if state.up else 0.0)
            series.add_metric(labels, float(state.series_count))
            failures.add_metric(labels, float(state.consecutive_failures))
            active.add_metric(labels, 1.0 if state.polling_active else 0.0)
            not_polled.add_metric(labels, float(state.series_dropped))  # 0 for the job collector
            if state.last_success is not None:
                last.add_metric(labels, state.last_success)
                age.add_metric(labels, max(0.0, now - state.last_success))
            if state.newest_datapoint is not None:
                newest.add_metric(labels, max(0.0, now - state.newest_datapoint))
        yield from (up, last, age, newest, series, failures, not_polled, active)


class ManifestCounters:
    """The manifest reader's counters for one (account, region)."""

    def __init__(self, metrics: SelfMetrics, account_id: str, region: str) -> None:
        self._metrics, self._labels = metrics, (account_id, region)

    def manifest_read(self, outcome: str) -> None:
        self._metrics.manifest_reads.labels(*self._labels, outcome).inc()

    def manifest_missing(self) -> None:
        self._metrics.manifests_missing.labels(*self._labels).inc()
