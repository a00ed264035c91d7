"""The schedule: each namespace in each region of each target is polled on its own interval, in the background."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from exporter.aws import errors
from exporter.aws.cloudwatch import Datapoint, get_metric_data, list_series
from exporter.aws.session import AwsClients
from exporter.config import Config, MissingData, NamespaceConfig, TargetConfig
from exporter.naming import dimension_label, metric_name
from exporter.planner import Batch, SeriesKey, plan, select_series
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import Sample, Store, TaskKey, TaskState

log = logging.getLogger(__name__)

MAX_TASK_THREADS = 16
BACKOFF_FACTOR_CAP = 4  # a failing task waits at most 4 intervals, so data returns soon after a fault clears


class NamespaceTask:
    """Polls one namespace in one region of one target; owns that task's discovery cache."""

    def __init__(
        self,
        target: TargetConfig,
        region: str,
        namespace: NamespaceConfig,
        clients: AwsClients,
        metrics: SelfMetrics,
        call_pool: ThreadPoolExecutor,
        max_queries_per_call: int,
    ) -> None:
        self.key = TaskKey(target.label, region, namespace.namespace)
        self.target = target
        self.region = region
        self.namespace = namespace
        self.resolved = namespace.resolved_metrics()
        self._clients = clients
        self._metrics = metrics
        self._call_pool = call_pool
        self._max_queries = max_queries_per_call
        self._discovered: list[SeriesKey] | None = None
        self._discovered_at = -math.inf

    @property
    def interval(self) -> float:
        return self.namespace.interval

    def run(self, now: float, previous: TaskState | None) -> TaskState:
        """One cycle: discover (when due), query, and build the new state; raises when the cycle fails."""
        account_id = self._clients.account_id(self.target)
        client = self._clients.client("cloudwatch", self.target, self.region, account_id)
        series = self._series(client, account_id, now)
        batches = plan(series, self.resolved, now, self._max_queries)
        futures = [self._call_pool.submit(self._run_batch, client, account_id, b) for b in batches]
        wait(futures)
        results: list[tuple[Batch, dict[str, Datapoint]]] = []
        for batch, future in zip(batches, futures, strict=True):
            results.append((batch, future.result()))  # re-raises the first failed batch's error
        samples, newest = self._samples(account_id, results)
        return TaskState(
            key=self.key,
            account_id=account_id,
            samples=tuple(samples),
            up=True,
            last_attempt=now,
            last_success=now,
            newest_datapoint=newest if newest is not None else (previous.newest_datapoint if previous else None),
            last_error=previous.last_error if previous else None,
            last_error_time=previous.last_error_time if previous else None,
            consecutive_failures=0,
        )

    def _series(self, client: object, account_id: str, now: float) -> list[SeriesKey]:
        discovery = self.namespace.discovery
        if discovery.mode == "static":
            found = [
                SeriesKey.of(self.namespace.namespace, m.name, dims) for m in self.resolved for dims in discovery.static
            ]
        else:
            if self._discovered is None or now - self._discovered_at >= discovery.refresh_interval:
                try:
                    self._discovered = list_series(client, self.namespace.namespace, discovery.recently_active)
                    self._discovered_at = now
                except Exception as exc:
                    if self._discovered is None:
                        raise
                    self._metrics.discovery_errors.labels(account_id, self.region, self.key.namespace).inc()
                    log.warning(
                        "ListMetrics refresh failed for %s in %s, keeping %d known series: %s",
                        self.key.namespace,
                        self.region,
                        len(self._discovered),
                        errors.describe(exc),
                    )
            found = self._discovered
        return select_series(found, self.resolved, discovery.dimension_filters)

    def _run_batch(self, client: object, account_id: str, batch: Batch) -> dict[str, Datapoint]:
        def on_page(count: int) -> None:
            self._metrics.record_metrics_requested(account_id, self.region, count)

        return get_metric_data(client, batch, on_page)

    def _samples(
        self, account_id: str, results: list[tuple[Batch, dict[str, Datapoint]]]
    ) -> tuple[list[Sample], float | None]:
        samples: list[Sample] = []
        newest: float | None = None
        with_timestamp = self.namespace.add_cloudwatch_timestamp
        for batch, points in results:
            for query in batch.queries:
                point = points.get(query.id)
                if point is None:
                    if query.missing_data is MissingData.DROP:
                        continue
                    value = 0.0 if query.missing_data is MissingData.ZERO else math.nan
                    stamp = None
                else:
                    value, stamp = point.value, point.timestamp
                    newest = stamp if newest is None else max(newest, stamp)
                series = query.series
                labels = (
                    ("account_id", account_id),
                    ("region", self.region),
                    *((dimension_label(k), v) for k, v in series.dimensions),
                )
                samples.append(
                    Sample(
                        name=metric_name(series.namespace, series.metric, query.statistic),
                        documentation=f"CloudWatch {series.namespace} {series.metric} {query.statistic}",
                        labels=labels,
                        value=value,
                        timestamp=stamp if with_timestamp else None,
                    )
                )
        return samples, newest


@dataclass
class _Slot:
    task: NamespaceTask
    next_due: float = 0.0
    running: bool = False


class Poller:
    """Runs every task on its interval in a background thread; a task never overlaps itself."""

    def __init__(
        self,
        config: Config,
        clients: AwsClients,
        store: Store,
        metrics: SelfMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._call_pool = ThreadPoolExecutor(config.aws.max_concurrent_requests, thread_name_prefix="aws-call")
        tasks = [
            NamespaceTask(target, region, ns, clients, metrics, self._call_pool, config.aws.max_queries_per_call)
            for target in config.targets
            for region in target.regions
            for ns in config.namespaces_for(target)
        ]
        self._slots = [_Slot(task) for task in tasks]
        self._task_pool = ThreadPoolExecutor(min(len(tasks), MAX_TASK_THREADS) or 1, thread_name_prefix="poll-task")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def tasks(self) -> list[NamespaceTask]:
        return [slot.task for slot in self._slots]

    def run_once(self) -> int:
        """Run every task once, in parallel, and wait; returns how many succeeded."""
        futures = [self._task_pool.submit(self._run, slot) for slot in self._slots]
        wait(futures)
        return sum(1 for slot in self._slots if (state := self._store.state(slot.task.key)) is not None and state.up)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop scheduling and abandon calls in flight; returns within about `timeout` seconds."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._task_pool.shutdown(wait=False, cancel_futures=True)
        self._call_pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for slot in self._slots:
                if not slot.running and slot.next_due <= now:
                    slot.running = True
                    self._task_pool.submit(self._run, slot)
            idle = [s.next_due for s in self._slots if not s.running]
            timeout = min(idle) - time.monotonic() if idle else 1.0
            self._wake.wait(max(0.01, min(timeout, 1.0)))
            self._wake.clear()

    def _run(self, slot: _Slot) -> None:
        started = time.monotonic()
        try:
            self._cycle(slot, started)
        except Exception:  # a bug here must not stop this task from being scheduled again
            log.exception("internal error while polling %s", slot.task.key)
            slot.next_due = started + slot.task.interval
        finally:
            slot.running = False
            self._wake.set()

    def _cycle(self, slot: _Slot, started: float) -> None:
        task = slot.task
        previous = self._store.state(task.key)
        labels = (
            previous.account_id if previous else task.target.account_id or "",
            task.region,
            task.key.namespace,
        )
        try:
            state = task.run(self._clock(), previous)
            outcome = "success"
        except Exception as exc:
            if self._stop.is_set():
                return  # shutting down: the pools refuse new calls; nothing to report
            outcome = "error"
            message = errors.describe(exc)
            if previous is None or previous.up or previous.last_error != message:
                log.warning(
                    "polling %s in %s (%s) failed: %s",
                    task.key.namespace,
                    task.region,
                    task.target.label,
                    message,
                )
            base = previous or TaskState(key=task.key, account_id=labels[0])
            state = base.failed(message, self._clock())
        labels = (state.account_id, task.region, task.key.namespace)
        self._store.publish(state)
        elapsed = time.monotonic() - started
        self._metrics.cycle_duration.labels(*labels).observe(elapsed)
        self._metrics.cycles.labels(*labels, outcome).inc()
        if elapsed > task.interval:
            self._metrics.cycles_overrun.labels(*labels).inc()
        delay = task.interval
        if state.consecutive_failures:
            factor = min(2 ** (state.consecutive_failures - 1), BACKOFF_FACTOR_CAP)
            delay = task.interval * factor * random.uniform(0.8, 1.0) if factor > 1 else task.interval
        slot.next_due = started + delay
