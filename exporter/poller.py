"""The schedule: each namespace in each region of each target is polled on its own interval, in the background."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any, Protocol

from exporter import errors
from exporter.aws.bedrock import list_jobs_checked
from exporter.aws.cloudwatch import list_series, run_batch
from exporter.aws.gate import CallGate
from exporter.aws.session import AwsClients
from exporter.config import Config, JobsConfig, NamespaceConfig, TargetConfig, defaults_for
from exporter.eta import ProgressHistory, estimate
from exporter.jobs import JobTracker, retained, within_budget
from exporter.manifests import ManifestReader, RetrySchedule
from exporter.model import Job, SeriesKey, TaskKey, TaskState
from exporter.planner import Batch, PlanCache, select_series
from exporter.quotas import Matched, QuotaReader, quota_usage
from exporter.results import STALE_INTERVALS, Answer, Outcome, cloudwatch_records
from exporter.selfmetrics import ManifestCounters, SelfMetrics
from exporter.snapshot import Store
from exporter.tags import TagReader

log = logging.getLogger(__name__)

MAX_TASK_THREADS = 16
CALL_GATE_WIDTH = 1  # call threads running Python at once (exporter.aws.gate; measured in docs/performance.md)
BACKOFF_FACTOR_CAP = 4  # a failing task waits at most 4 intervals, so data returns soon after a fault clears
JOBS_NAMESPACE = "bedrock:jobs"  # the `namespace` label of the job collector's health series


def in_shard(target_label: str, region: str, shard_index: int, shard_count: int) -> bool:
    """Whether (target, region) belongs to this shard: a stable hash, so N replicas cover each exactly once."""
    digest = hashlib.sha256(f"{target_label}\x00{region}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count == shard_index


class ActivityBoard:
    """What the job collector knows per (target, region): unfinished jobs (True), none (False) or unknown (None).

    Unknown (never listed, or the job API failing) counts as active: a missing permission never hides metrics.
    """

    def __init__(self, on_wake: Callable[[str, str], None]) -> None:
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], bool | None] = {}
        self._on_wake = on_wake  # called with (target, region) when a paused region reports jobs again

    def report(self, target: str, region: str, active: bool | None) -> None:
        with self._lock:
            was_paused = self._active.get((target, region)) is False
            self._active[(target, region)] = active
        if was_paused and active is not False:
            self._on_wake(target, region)

    def paused(self, target: str, region: str) -> bool:
        with self._lock:
            return self._active.get((target, region)) is False


class Task(Protocol):
    """A unit of polling the Poller schedules."""

    key: TaskKey
    target: TargetConfig
    region: str

    @property
    def interval(self) -> float: ...

    def run(self, now: float, previous: TaskState | None) -> TaskState: ...


def settle(futures: list[Future[Any]]) -> None:
    """Wait until every future has finished or been cancelled.

    Not `concurrent.futures.wait`: a future cancelled by `shutdown(cancel_futures=True)` (the poller's stop, a reload)
    never wakes `wait`'s waiter, because the pool drains it from its queue without a worker calling
    `set_running_or_notify_cancel`; the cycle in progress then hung forever and kept the interpreter from exiting
    (tests/unit/test_poller.py). A future's own `exception()` is woken by `cancel()`.
    """
    for future in futures:
        with contextlib.suppress(CancelledError):
            future.exception()


class NamespaceTask:
    """Polls one namespace in one region of one target: discovery (cached), GetMetricData, then the results step."""

    def __init__(
        self,
        target: TargetConfig,
        region: str,
        namespace: NamespaceConfig,
        clients: AwsClients,
        metrics: SelfMetrics,
        call_pool: ThreadPoolExecutor,
        max_queries_per_call: int,
        board: ActivityBoard | None,  # None: never pauses on job activity
        idle_heartbeat: float,
        gate: CallGate,
    ) -> None:
        self.key = TaskKey(target.label, region, namespace.namespace)
        self.target = target
        self.region = region
        self.namespace = namespace
        self.resolved = namespace.resolved_metrics()
        self.insights = namespace.resolved_insights()
        self._clients = clients
        self._metrics = metrics
        self._call_pool = call_pool
        self._gate = gate
        self._max_queries = max_queries_per_call
        self._discovered: list[SeriesKey] | None = None
        self._discovered_at = -math.inf
        # Only a namespace whose table entry says so follows the job collector; others always poll. So does a
        # monitoring account's: its linked accounts' jobs, which feed their metrics, are not listed from here.
        follows = defaults_for(namespace.namespace).follows_jobs and not target.include_linked_accounts
        self._board = board if follows else None
        self._idle_heartbeat = idle_heartbeat
        self._last_polled = -math.inf
        self._reported_errors: tuple[tuple[str, int], ...] = ()
        self._plans = PlanCache()
        # The selection is kept while discovery returns the same list object (until its next refresh).
        self._selected_from: list[SeriesKey] | None = None
        self._selected: list[SeriesKey] = []
        self.series_dropped = 0  # of the last selection, over discovery.max_series
        self._static = [
            SeriesKey.of(namespace.namespace, m.name, dims)
            for m in self.resolved
            for dims in namespace.discovery.static
        ]
        self._unreadable_labels: set[tuple[str, str]] = set()

    @property
    def interval(self) -> float:
        return self.namespace.interval

    def run(self, now: float, previous: TaskState | None) -> TaskState:
        """One cycle: discover (when due), query, and build the new state; raises when the cycle fails."""
        account_id = self._clients.account_id(self.target)
        if self._paused(now):
            return self._idle_state(account_id, now, previous)
        client = self._clients.client("cloudwatch", self.target, self.region, account_id)
        series = self._series(client, account_id, now) if self.resolved else []  # Insights alone: no ListMetrics
        batches = self._plans.plan(series, self.resolved, now, self._max_queries, self.insights)
        self._last_polled = now
        futures = [self._call_pool.submit(self._run_batch, client, account_id, b) for b in batches]
        settle(futures)
        answered = [(b, f.result()) for b, f in zip(batches, futures, strict=True)]  # re-raises a failed batch
        values, insights = (previous.values, previous.insights) if previous else ((), ())
        outcome = cloudwatch_records(answered, values, insights, self.insights, now, self.interval)
        self._report(account_id, outcome)
        return self._success(account_id, outcome, now, previous, polling_active=True)

    def _report(self, account_id: str, outcome: Outcome) -> None:
        """Count per-result errors; log once per change of state, with CloudWatch's messages."""
        for status, count in outcome.errors:
            self._metrics.result_errors.labels(account_id, self.region, self.key.namespace, status).inc(count)
        if outcome.errors != self._reported_errors:
            if outcome.errors:
                log.warning(
                    "GetMetricData for %s in %s (%s): results with errors %s; their series keep their last value "
                    "for %d intervals, then disappear%s",
                    *self._where(),
                    ", ".join(f"{status} x{count}" for status, count in outcome.errors),
                    STALE_INTERVALS,
                    (": " + "; ".join(outcome.messages)) if outcome.messages else "",
                )
            else:
                log.info("GetMetricData for %s in %s (%s): results complete again", *self._where())
            self._reported_errors = outcome.errors
        for name, label in outcome.unsplit_labels:
            if (name, label) not in self._unreadable_labels and len(self._unreadable_labels) < 1000:
                self._unreadable_labels.add((name, label))
                log.warning("Insights query %s: cannot split result label %.200r into its GROUP BY keys", name, label)

    def _where(self) -> tuple[str, str, str]:
        return self.key.namespace, self.region, self.target.label

    def _success(
        self, account_id: str, outcome: Outcome, now: float, previous: TaskState | None, polling_active: bool
    ) -> TaskState:
        """A good cycle's state; the newest datapoint and the last error are carried over from `previous`."""
        newest = outcome.newest if outcome.newest is not None else (previous.newest_datapoint if previous else None)
        # A cycle whose results include errors did not refresh all its data: its data age keeps rising.
        refreshed = now if not outcome.errors else (previous.last_success if previous else None)
        return TaskState(
            key=self.key,
            account_id=account_id,
            values=outcome.values,
            insights=outcome.insights,
            up=True,
            last_attempt=now,
            last_success=refreshed,
            newest_datapoint=newest,
            last_error=previous.last_error if previous else None,
            last_error_time=previous.last_error_time if previous else None,
            polling_active=polling_active,
            cloudwatch_timestamps=self.namespace.add_cloudwatch_timestamp,
            result_errors=outcome.errors,
            result_messages=outcome.messages,
            series_dropped=self.series_dropped,
        )

    def _paused(self, now: float) -> bool:
        if self._board is None or not self._board.paused(self.target.label, self.region):
            return False
        return not (self._idle_heartbeat > 0 and now - self._last_polled >= self._idle_heartbeat)

    def _idle_state(self, account_id: str, now: float, previous: TaskState | None) -> TaskState:
        """No unfinished job in the region: Bedrock publishes nothing, so known series show their missing-data value
        as if CloudWatch had answered Complete with no datapoint, and AWS is not called."""
        known = self._select(self._discovered or [])
        batches = self._plans.plan(known, self.resolved, now, self._max_queries, self.insights)
        empty = [
            (b, {qid: Answer() for qid in [q.id for q in b.queries] + [e.id for e in b.expressions]}) for b in batches
        ]
        outcome = cloudwatch_records(
            empty, (), previous.insights if previous else (), self.insights, now, self.interval
        )
        return self._success(account_id, outcome, now, previous, polling_active=False)

    def _series(self, client: object, account_id: str, now: float) -> list[SeriesKey]:
        discovery = self.namespace.discovery
        if discovery.mode == "static":
            found = self._static
        else:
            if self._discovered is None or now - self._discovered_at >= discovery.refresh_interval:
                try:
                    self._discovered = list_series(
                        client,
                        self.namespace.namespace,
                        discovery.recently_active,
                        self.target.include_linked_accounts,
                        account_id,
                    )
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
        return self._select(found)

    def _select(self, found: list[SeriesKey]) -> list[SeriesKey]:
        if found is not self._selected_from:
            discovery = self.namespace.discovery
            selected = select_series(found, self.resolved, discovery.dimension_filters)
            self.series_dropped = max(0, len(selected) - discovery.max_series)
            if self.series_dropped:
                # Whole dimension sets are kept or dropped (a model with all its metrics), the same ones each time.
                selected = sorted(selected, key=lambda s: (s.dimensions, s.metric))[: discovery.max_series]
                log.warning(
                    "%s in %s: %d series found, %d polled (discovery.max_series); %d not polled",
                    self.key.namespace,
                    self.region,
                    len(selected) + self.series_dropped,
                    len(selected),
                    self.series_dropped,
                )
            self._selected = selected
            self._selected_from = found
        return self._selected

    def _run_batch(self, client: object, account_id: str, batch: Batch) -> dict[str, Answer]:
        def on_page(count: int) -> None:
            self._metrics.record_metrics_requested(account_id, self.region, count)

        def on_out_of_window(count: int) -> None:
            # an answer with datapoints far outside the window asked for: those are not values
            self._metrics.bad_answers.labels(account_id, self.region, "GetMetricData").inc()
            log.warning(
                "GetMetricData for %s in %s (%s): %d datapoints outside the requested window dropped",
                *self._where(),
                count,
            )

        with self._gate.working():
            return run_batch(client, batch, on_page, on_out_of_window)


class JobTask:
    """Lists one region's Bedrock batch jobs, exports them, and tells the ActivityBoard whether work exists."""

    def __init__(
        self,
        target: TargetConfig,
        region: str,
        config: JobsConfig,
        clients: AwsClients,
        board: ActivityBoard,
        started: float,
        metrics: SelfMetrics,
    ) -> None:
        self.key = TaskKey(target.label, region, JOBS_NAMESPACE)
        self.target = target
        self.region = region
        self._config = config
        self._clients = clients
        self._board = board
        self._tracker = JobTracker(started)
        self._progress = ProgressHistory(config.eta_window)
        self._metrics = metrics
        self._reader: ManifestReader | None = None
        self._tags: TagReader | None = None
        self._unknown_logged: set[str] = set()
        self._quotas = (
            QuotaReader(config.quotas.refresh_interval, config.quotas.model_map) if config.quotas.enabled else None
        )

    @property
    def interval(self) -> float:
        return self._config.interval

    def run(self, now: float, previous: TaskState | None) -> TaskState:
        try:
            account_id = self._clients.account_id(self.target)
            client = self._clients.client("bedrock", self.target, self.region, account_id)
            listing = list_jobs_checked(client, now - self._config.lookback, self._config.page_size, now)
        except Exception:
            self._board.report(self.target.label, self.region, None)  # fail open: metrics keep flowing
            raise
        jobs = listing.jobs
        matched = self._read_quotas(now, account_id, client)  # before the counters: they and the state land together
        self._count_bad(account_id, listing.rejected, listing.truncated)
        if listing.truncated is None:  # a cut-short listing lacks jobs: their status history must not be forgotten
            self._tracker.observe(jobs, now)
            for model_id, waited in self._tracker.take_entered():
                self._metrics.queue_wait.labels(account_id, self.region, model_id).observe(waited)
        self._count_unknown(account_id, jobs)
        # Fail open: any status outside the terminal set (one the SDK does not list included) is unfinished work.
        self._board.report(self.target.label, self.region, any(not j.finished for j in jobs))
        kept, dropped_finished, dropped_running = within_budget(
            retained(jobs, now, self._config.retention), self._config.max_jobs
        )
        self._count_dropped(account_id, dropped_finished, dropped_running)
        usage = self._manifests(account_id).update(kept, now) if self._config.read_manifests else ()
        tags = self._read_tags(account_id, client, kept, now)
        self._progress.observe(now, kept)
        etas, drains = estimate(kept, self._progress.rates()[1])
        return TaskState(
            key=self.key,
            account_id=account_id,
            jobs=tuple(sorted(kept, key=lambda j: j.arn)),
            jobs_finished=self._tracker.records(),
            job_usage=usage,
            job_eta=etas,
            model_drain=drains,
            job_queue_wait=self._tracker.queue_waits(kept),
            up=True,
            last_attempt=now,
            last_success=now,
            last_error=listing.truncated or (previous.last_error if previous else None),
            last_error_time=now if listing.truncated else (previous.last_error_time if previous else None),
            jobs_dropped=(("finished", dropped_finished), ("running", dropped_running)),
            bad_records=tuple(sorted((f"{m}: {r}" if m else r, n) for (m, r), n in listing.rejected.items())),
            quotas=quota_usage(matched, jobs),
            quotas_unmatched=matched.unmatched,
            record_quotas=matched.records,
            job_tags=tuple(tags.items()),
        )

    def _read_tags(
        self, account_id: str, client: Any, jobs: list[Job], now: float
    ) -> dict[str, tuple[tuple[str, str], ...]]:
        """jobs.tag_labels: the finished jobs' tags, read once per job (ListTagsForResource); nothing when off."""
        if not self._config.tag_labels:
            return {}
        if self._tags is None:
            dropped, bad = self._metrics.tag_values_dropped, self._metrics.bad_answers
            self._tags = TagReader(
                self._config.tag_labels,
                lambda why: dropped.labels(account_id, self.region, why).inc(),
                lambda: bad.labels(account_id, self.region, "ListTagsForResource").inc(),
            )
        return self._tags.update(jobs, now, lambda arn: client.list_tags_for_resource(resourceARN=arn))

    def _read_quotas(self, now: float, account_id: str, bedrock: Any) -> Matched:
        """The quotas matched to models, read again when due (jobs.quotas); nothing when the option is off. A failed
        read keeps the last good quotas and never fails the listing."""
        if self._quotas is None:
            return Matched()
        self._quotas.refresh(
            now,
            lambda: self._clients.client("service-quotas", self.target, self.region, account_id, keep=False),
            bedrock,
            lambda operation: self._metrics.bad_answers.labels(account_id, self.region, operation).inc(),
        )
        return self._quotas.matched

    def _count_dropped(self, account_id: str, finished: int, running: int) -> None:
        """Jobs over the `jobs.max_jobs` budget: counted; running ones also logged (and warned about on /)."""
        for kind, count in (("finished", finished), ("running", running)):
            if count:
                self._metrics.jobs_dropped.labels(account_id, self.region, kind).inc(count)
        if running:
            log.warning(
                "jobs in %s (%s): %d running jobs over the jobs.max_jobs budget (%d) not exported",
                self.region,
                self.target.label,
                running,
                self._config.max_jobs,
            )

    def _count_bad(self, account_id: str, rejected: Mapping[tuple[str, str], int], truncated: str | None) -> None:
        """Count skipped summaries and a listing cut short (a bad answer; the jobs read so far are kept)."""
        for (member, reason), count in rejected.items():
            self._metrics.bad_records.labels(account_id, self.region, "ListModelInvocationJobs", member, reason).inc(
                count
            )
        if truncated is not None:
            self._metrics.bad_answers.labels(account_id, self.region, "ListModelInvocationJobs").inc()
            log.warning(
                "listing jobs in %s (%s): %s; the jobs read so far are kept", self.region, self.target.label, truncated
            )

    def _manifests(self, account_id: str) -> ManifestReader:
        """The manifest reader, made on first use: its S3 client exists only when the option is on."""
        if self._reader is None:
            config = self._config
            self._reader = ManifestReader(
                lambda: self._clients.client("s3", self.target, self.region, account_id),
                ManifestCounters(self._metrics, account_id, self.region),
                max_concurrency=config.manifest_max_concurrency,
                schedule=RetrySchedule(config.manifest_retry, 3600.0, config.manifest_give_up_after),
                max_bytes=config.manifest_max_bytes,
            )
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def _count_unknown(self, account_id: str, jobs: list[Job]) -> None:
        for job in jobs:
            if job.known_status:
                continue
            self._metrics.unknown_values.labels(account_id, self.region, "ListModelInvocationJobs", "status").inc()
            if job.status not in self._unknown_logged and len(self._unknown_logged) < 100:
                self._unknown_logged.add(job.status)
                log.warning(
                    "job status %.100r is not one the SDK lists; exported as is and treated as unfinished", job.status
                )


class _Slot:
    """One task's schedule. `lock` guards the fields: job threads (wake-ups) and task threads both write them."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.lock = threading.Lock()
        self.next_due = 0.0
        self.running = False
        self.wake_pending = False  # a wake-up that arrived while the task ran: honoured when the cycle ends

    def wake(self) -> None:
        with self.lock:
            self.next_due = 0.0
            if self.running:
                self.wake_pending = True

    def claim(self, now: float) -> bool:
        """Mark the task running if it is due and idle; True if the caller should run it."""
        with self.lock:
            if self.running or self.next_due > now:
                return False
            self.running = True
            return True

    def finish(self, next_due: float) -> None:
        """The cycle ended: schedule the next one, now if a wake-up arrived meanwhile."""
        with self.lock:
            self.next_due = 0.0 if self.wake_pending else next_due
            self.wake_pending = False
            self.running = False


class Poller:
    """Runs every task on its interval in a background thread; a task never overlaps itself."""

    def __init__(
        self,
        config: Config,
        clients: AwsClients,
        store: Store,
        metrics: SelfMetrics,
        clock: Callable[[], float] = time.time,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self._store = store
        # The Store generation this poller's results belong to; the owner sets it (Store.new_generation) before
        # start. None publishes unconditionally (a Poller used alone, as in tests).
        self.generation: int | None = None
        self._metrics = metrics
        self._clients = clients
        self._clock = clock
        self._call_pool = ThreadPoolExecutor(config.aws.max_concurrent_requests, thread_name_prefix="aws-call")
        # One call thread at a time runs Python; the others wait on the network or on the gate (exporter.aws.gate)
        self._gate = CallGate(CALL_GATE_WIDTH)
        self.board = ActivityBoard(self._wake_metrics)
        jobs = config.jobs
        board = self.board if jobs.enabled and jobs.pause_idle_metrics else None
        tasks: list[Task] = []
        for target in config.targets:
            namespaces = config.namespaces_for(target)
            for region in target.regions:
                if not in_shard(target.label, region, *shard):
                    continue
                tasks.extend(
                    NamespaceTask(
                        target,
                        region,
                        ns,
                        clients,
                        metrics,
                        self._call_pool,
                        config.aws.max_queries_per_call,
                        board,
                        jobs.idle_heartbeat,
                        self._gate,
                    )
                    for ns in namespaces
                )
                if jobs.enabled and any(defaults_for(ns.namespace).follows_jobs for ns in namespaces):
                    tasks.append(JobTask(target, region, jobs, clients, self.board, clock(), metrics))
        self._slots = [_Slot(task) for task in tasks]
        self._task_pool = ThreadPoolExecutor(min(len(tasks), MAX_TASK_THREADS) or 1, thread_name_prefix="poll-task")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def tasks(self) -> list[Task]:
        return [slot.task for slot in self._slots]

    def _wake_metrics(self, target: str, region: str) -> None:
        """A job appeared: poll that region's Bedrock metrics now rather than at the next interval."""
        for slot in self._slots:
            key = slot.task.key
            if (key.target, key.region) == (target, region) and defaults_for(key.namespace).follows_jobs:
                slot.wake()
        self._wake.set()

    def run_once(self) -> int:
        """Run every task once and wait (jobs first, so pausing applies); returns how many succeeded."""
        for jobs_first in (True, False):
            group = [slot for slot in self._slots if isinstance(slot.task, JobTask) is jobs_first]
            settle([self._task_pool.submit(self._run, slot) for slot in group if slot.claim(math.inf)])
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
        for slot in self._slots:
            if isinstance(slot.task, JobTask):
                slot.task.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for slot in self._slots:
                if slot.claim(now):
                    self._task_pool.submit(self._run, slot)
            idle = [s.next_due for s in self._slots if not s.running]
            timeout = min(idle) - time.monotonic() if idle else 1.0
            self._wake.wait(max(0.01, min(timeout, 1.0)))
            self._wake.clear()

    def _run(self, slot: _Slot) -> None:
        started = time.monotonic()
        next_due = started + slot.task.interval
        try:
            next_due = self._cycle(slot, started)
        except Exception:  # a bug here must not stop this task from being scheduled again
            log.exception("internal error while polling %s", slot.task.key)
        finally:
            slot.finish(next_due)
            self._wake.set()

    def _cycle(self, slot: _Slot, started: float) -> float:
        """One cycle of one task, published; returns when the next one is due."""
        task = slot.task
        previous = self._store.state(task.key)
        account_id = previous.account_id if previous else self._clients.known_account_id(task.target)
        try:
            state = task.run(self._clock(), previous)
            outcome = "success"
        except Exception as exc:
            if self._stop.is_set():
                return math.inf  # shutting down: the pools refuse new calls; nothing to report
            outcome = "error"
            message = errors.describe(exc)
            if isinstance(exc, errors.BadAnswerError):
                self._metrics.bad_answers.labels(account_id, task.region, exc.operation).inc()
            if errors.classify(exc) == errors.EXPIRED_CREDENTIALS:
                self._clients.invalidate(task.target)  # new credentials (a fresh assume-role) next cycle
            if previous is None or previous.up or previous.last_error != message:
                log.warning(
                    "polling %s in %s (%s) failed: %s",
                    task.key.namespace,
                    task.region,
                    task.target.label,
                    message,
                )
            base = previous or TaskState(key=task.key, account_id=account_id)
            state = base.failed(message, self._clock())
            del base
        # The Store holds the only other reference: once it publishes the new state, the previous cycle's records go
        # before the sinks render the new Snapshot instead of after (20,000 records, ~3 MB at the peak).
        del previous
        labels = (state.account_id, task.region, task.key.namespace)
        if self._stop.is_set() or not self._store.publish(state, self.generation):
            return math.inf  # replaced by a reload or shutting down: a late result must not bring back a dropped task
        elapsed = time.monotonic() - started
        self._metrics.cycle_duration.labels(*labels).observe(elapsed)
        self._metrics.cycles.labels(*labels, outcome).inc()
        if elapsed > task.interval:
            self._metrics.cycles_overrun.labels(*labels).inc()
        factor = min(2 ** max(state.consecutive_failures - 1, 0), BACKOFF_FACTOR_CAP)
        return started + (task.interval * factor * random.uniform(0.8, 1.0) if factor > 1 else task.interval)
