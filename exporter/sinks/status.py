"""The status page at `/` and its JSON at `/api/status`: one dict built from the Snapshot's records, rendered two ways.

The dict is built here; its HTML in `status_html`; the stylesheet and script are package data (exporter/assets).

Nothing here calls AWS: the dict comes from the Store's current Snapshot and the self-metrics counters. Every value
shown in HTML is escaped, since model IDs, job names and error messages come from outside.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from urllib.parse import parse_qs

from prometheus_client import Counter as PromCounter

from exporter import __version__
from exporter.config import defaults_for
from exporter.failures import failure_reason
from exporter.families import JobSpend, job_spend, spend_totals
from exporter.http import TEXT, Response
from exporter.model import CloudWatchValue, QuotaUsage, TaskKey, TaskState
from exporter.pricing import resolve
from exporter.quotas import quota_for
from exporter.selfmetrics import HOURS_PER_MONTH, SelfMetrics
from exporter.sinks.status_html import JSON, MAX_LIMIT, render_html
from exporter.snapshot import Snapshot, Store

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: models[].metrics is a list of CloudWatch metric/statistic records; tasks[].partial
DEFAULT_LIMIT = 200  # rows per section; keeps the page small and fast at 10,000 series
# The page names its documentation instead of linking a hosting site: the docs ship with the source.
DOCS = "docs/status.md and docs/metrics.md in the bedrock-batch-exporter source"


_NO_CYCLES: Mapping[str, int] = {"success": 0, "error": 0}


# --- the dict -----------------------------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return value if value is not None and math.isfinite(value) else None


def _ago(now: float, then: float | None) -> float | None:
    # never negative: a clock ahead of ours is "just now", as /metrics clamps its ages to 0
    return None if then is None else max(0.0, round(now - then, 3))


def _counter_totals(counter: PromCounter) -> Iterator[tuple[dict[str, str], float]]:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                yield sample.labels, sample.value


def _empty_usage() -> JSON:
    return {
        "requests": 0,
        "errors": 0,
        "throttled": 0,
        "retries": 0,
        "by_outcome": {},
        "by_operation": {},
        "metrics_requested": 0,
        "cost_dollars": 0.0,
    }


def api_usage(metrics: SelfMetrics | None) -> dict[tuple[str, str], JSON]:
    """AWS API use so far per (account_id, region), from the self-metrics counters."""
    usage: defaultdict[tuple[str, str], JSON] = defaultdict(_empty_usage)
    if metrics is None:
        return usage
    for labels, value in _counter_totals(metrics.api_requests):
        entry = usage[(labels["account_id"], labels["region"])]
        count = int(value)
        outcome, operation = labels["outcome"], labels["operation"]
        entry["requests"] += count
        entry["errors"] += 0 if outcome == "success" else count
        entry["throttled"] += count if outcome == "throttled" else 0
        entry["by_outcome"][outcome] = entry["by_outcome"].get(outcome, 0) + count
        entry["by_operation"][operation] = entry["by_operation"].get(operation, 0) + count
    for labels, value in _counter_totals(metrics.api_retries):
        usage[(labels["account_id"], labels["region"])]["retries"] += int(value)
    for labels, value in _counter_totals(metrics.metrics_requested):
        usage[(labels["account_id"], labels["region"])]["metrics_requested"] += int(value)
    for labels, value in _counter_totals(metrics.api_cost):
        usage[(labels["account_id"], labels["region"])]["cost_dollars"] += value
    return usage


def _cycles(metrics: SelfMetrics | None) -> dict[tuple[str, str, str], dict[str, int]]:
    out: defaultdict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: dict(_NO_CYCLES))
    if metrics is not None:
        for labels, value in _counter_totals(metrics.cycles):
            key = (labels["account_id"], labels["region"], labels["namespace"])
            out[key][labels["outcome"]] = int(value)
    return out


def _task_health(state: TaskState) -> str:
    if not state.up:
        return "down"
    return "up" if state.polling_active else "paused"


def _task(state: TaskState, now: float, cycles: Mapping[str, int]) -> JSON:
    error = None
    if state.last_error is not None:
        error = {
            "message": state.last_error,
            "time": state.last_error_time,
            "age_seconds": _ago(now, state.last_error_time),
        }
    return {
        "namespace": state.key.namespace,
        "health": _task_health(state),
        "up": state.up,
        "polling_active": state.polling_active,
        "last_attempt": state.last_attempt,
        "last_success": state.last_success,
        "last_success_age_seconds": _ago(now, state.last_success),
        "newest_datapoint": state.newest_datapoint,
        "newest_datapoint_age_seconds": _ago(now, state.newest_datapoint),
        "last_error": error,
        "consecutive_failures": state.consecutive_failures,
        "cycles": dict(cycles),
        "series": state.series_count,
        "partial": state.partial,
        "result_errors": dict(state.result_errors),
        "result_messages": list(state.result_messages),
        "bad_records": dict(state.bad_records),
        "jobs_dropped": dict(state.jobs_dropped),
        "series_dropped": state.series_dropped,
        "quotas": [_quota(q) for q in state.quotas],
        "quotas_unmatched": list(state.quotas_unmatched),
    }


def _quota(quota: QuotaUsage) -> JSON:
    return {
        "model_id": quota.model_id,
        "quota_code": quota.code,
        "limit": quota.limit,
        "source": quota.source,
        "in_use": quota.in_use,
        "waiting": quota.waiting,
    }


def _regions(
    snapshot: Snapshot,
    now: float,
    usage: Mapping[tuple[str, str], JSON],
    cycles: Mapping[tuple[str, str, str], Mapping[str, int]],
) -> list[JSON]:
    groups: dict[tuple[str, str], list[TaskState]] = defaultdict(list)
    for key, state in snapshot.tasks.items():
        groups[(key.target, key.region)].append(state)
    out = []
    for (target, region), states in groups.items():
        states.sort(key=lambda s: s.key.namespace)
        tasks = [_task(s, now, cycles.get((s.account_id, region, s.key.namespace), _NO_CYCLES)) for s in states]
        account_id = states[0].account_id
        out.append(
            {
                "target": target,
                "account_id": account_id,
                "region": region,
                "health": "down" if any(t["health"] == "down" for t in tasks) else "up",
                "series": sum(t["series"] for t in tasks),
                "aws_api": usage.get((account_id, region), _empty_usage()),
                "tasks": tasks,
            }
        )
    out.sort(key=lambda r: (r["health"] != "down", r["target"], r["account_id"], r["region"]))
    return out


def _models(snapshot: Snapshot, spend: Mapping[TaskKey, list[JobSpend]], now: float, limit: int) -> JSON:
    """The section of models; only the `limit` shown are built in full, so 10,000 series stay cheap."""
    series: defaultdict[tuple[str, str, str], list[tuple[CloudWatchValue, TaskState]]] = defaultdict(list)
    jobs: defaultdict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    finished_cost: dict[tuple[str, str, str], float] = {}
    quotas: defaultdict[tuple[str, str], dict[str, QuotaUsage]] = defaultdict(dict)  # (account, region) -> model
    table = snapshot.price_table
    for state in snapshot.tasks.values():
        region = state.key.region
        quotas[(state.account_id, region)].update((q.model_id, q) for q in state.quotas)
        for value in state.values:
            dimension = defaults_for(value.series.namespace).model_dimension
            if dimension is None:
                continue
            model = dict(value.series.dimensions).get(dimension)
            if model is not None:
                series[(value.series.account or state.account_id, region, model)].append((value, state))
        for job in state.jobs:
            counts = jobs[(state.account_id, region, job.model_id)]
            counts[job.status] = counts.get(job.status, 0) + 1
        for (model, _), total in spend_totals(spend[state.key]).items():
            if total.priced:
                key = (state.account_id, region, model)
                finished_cost[key] = finished_cost.get(key, 0.0) + total.cost
    keys = sorted(series.keys() | jobs.keys())
    items = []
    for key in keys[:limit]:
        metrics: list[JSON] = []
        refreshed = None
        for value, state in sorted(series.get(key, ()), key=lambda s: (s[0].series.metric, s[0].statistic)):
            metrics.append(
                {
                    "metric": value.series.metric,
                    "statistic": value.statistic,
                    "value": _finite(value.value),
                    "timestamp": value.timestamp,
                    "age_seconds": _ago(now, value.timestamp),
                    "stale": value.stale,
                }
            )
            refreshed = state.last_success if refreshed is None else max(refreshed, state.last_success or refreshed)
        price = resolve(key[2], table)
        # an inference profile's jobs count toward its base model's quota
        quota = quota_for(key[2], quotas.get((key[0], key[1]), {}))
        items.append(
            {
                "account_id": key[0],
                "region": key[1],
                "model_id": key[2],
                "refreshed": refreshed,
                "refreshed_age_seconds": _ago(now, refreshed),
                "metrics": metrics,
                "jobs_by_status": jobs.get(key, {}),
                "finished_jobs_cost_dollars": finished_cost.get(key),
                "quota": None if quota is None else _quota(quota),
                "batch_price": None
                if price is None
                else {"input": price.input, "output": price.output, "source": price.source},
            }
        )
    return {"total": len(keys), "shown": len(items), "items": items}


def _jobs(snapshot: Snapshot, spend: Mapping[TaskKey, list[JobSpend]], now: float) -> list[JSON]:
    out = []
    for state in snapshot.tasks.values():
        spent = {s.job.arn: s for s in spend[state.key]}
        etas = {e.arn: e.seconds for e in state.job_eta}
        tags = dict(state.job_tags)
        records = dict(state.record_quotas)
        for job in state.jobs:
            costed = spent.get(job.arn)
            used, cost = (None, None) if costed is None else (costed.usage, costed.cost)
            total, processed = job.total_records, job.processed_records
            records_quota = quota_for(job.model_id, records)
            out.append(
                {
                    "account_id": state.account_id,
                    "region": state.key.region,
                    "job_arn": job.arn,
                    "job_name": job.name,
                    "model_id": job.model_id,
                    "status": job.status,
                    "known_status": job.known_status,
                    "invocation_type": job.invocation_type,
                    "total_records": _finite(total),
                    "processed_records": _finite(processed),
                    "succeeded_records": _finite(job.succeeded_records),
                    "failed_records": _finite(job.failed_records),
                    "submitted": job.submit_time,
                    "expires": job.expiration_time,
                    "ended": job.ended,
                    "finished": job.finished,
                    # the model's "Records per batch inference job" quota (jobs.quotas), or null
                    "records_per_job_limit": None if records_quota is None else records_quota.value,
                    "progress": round(min(processed / total, 1.0), 4) if total and processed is not None else None,
                    # The exporter's estimate (docs/insight.md): InProgress jobs only; a waiting job shows its status.
                    "eta_seconds": _finite(etas.get(job.arn)) if job.status == "InProgress" else None,
                    "since_submit_seconds": _ago(now, job.submit_time),
                    "to_expiration_seconds": None
                    if job.expiration_time is None
                    else round(job.expiration_time - now, 3),
                    # from the job's manifest.json.out (jobs.read_manifests); null until read, or without a price
                    "input_tokens": None if used is None else used.input_tokens,
                    "output_tokens": None if used is None else used.output_tokens,
                    "cost_dollars": cost,
                    # jobs.tag_labels: each configured key's value ("" untagged or refused); finished jobs only
                    "tags": dict(tags.get(job.arn, ())),
                    # why it failed (exporter.failures), and what the operator checks first; the message as AWS sent
                    # it, cut at 2,048 characters (escaped where the page shows it)
                    "failure_reason": failure_reason(job.status, job.message),
                    "message": job.message,
                    "role_arn": job.role_arn,
                    "input_s3_uri": job.input_s3_uri,
                    "kms_key_id": job.kms_key_id,
                    "subnet_ids": list(job.subnet_ids),
                    "security_group_ids": list(job.security_group_ids),
                }
            )
    return out


def _section(items: list[JSON], limit: int) -> JSON:
    return {"total": len(items), "shown": min(len(items), limit), "items": items[:limit]}


def build_status(
    snapshot: Snapshot,
    now: float,
    started: float,
    metrics: SelfMetrics | None = None,
    limit: int = DEFAULT_LIMIT,
    metrics_path: str = "/metrics",
) -> JSON:
    """Everything the status page shows, as plain JSON-ready data; sections hold at most `limit` items."""
    usage = api_usage(metrics)
    regions = _regions(snapshot, now, usage, _cycles(metrics))
    tasks = [t for r in regions for t in r["tasks"]]
    # each job's cost worked out once for both sections (exporter.families: the one place it is computed)
    spend = {key: job_spend(state, snapshot.price_table) for key, state in snapshot.tasks.items()}
    models = _models(snapshot, spend, now, limit)
    jobs = _jobs(snapshot, spend, now)
    running = sorted(
        (j for j in jobs if not j["finished"]),
        key=lambda j: (j["expires"] is None, j["expires"] or 0.0, j["job_name"], j["job_arn"]),
    )
    finished = sorted(
        (j for j in jobs if j["finished"]), key=lambda j: (-(j["ended"] or j["submitted"] or 0.0), j["job_arn"])
    )
    down = sum(1 for t in tasks if t["health"] == "down")
    spent = sum(u["cost_dollars"] for u in usage.values())
    if not tasks:
        health = "starting"
    elif down == len(tasks):
        health = "down"
    else:
        health = "degraded" if down else "ok"
    return {
        "schema_version": SCHEMA_VERSION,
        "exporter": {
            "version": __version__,
            "python_version": platform.python_version(),
            "now": round(now, 3),
            "started": round(started, 3),
            "uptime_seconds": round(now - started, 3),
            "health": health,
            "ready": snapshot.ready,
            "snapshot_version": snapshot.version,
            "snapshot_age_seconds": _ago(now, snapshot.created),
        },
        "summary": {
            "tasks": len(tasks),
            "tasks_up": sum(1 for t in tasks if t["health"] == "up"),
            "tasks_paused": sum(1 for t in tasks if t["health"] == "paused"),
            "tasks_down": down,
            "series": 2 * len(snapshot.prices) + sum(t["series"] for t in tasks),
            "models": models["total"],
            "jobs_running": len(running),
            "jobs_finished": len(finished),
            "aws_api_requests": sum(u["requests"] for u in usage.values()),
            "aws_api_errors": sum(u["errors"] for u in usage.values()),
            "metrics_requested": sum(u["metrics_requested"] for u in usage.values()),
            "cost_dollars": spent,
            # At the rate since start: spend / uptime, over an average month (730 hours).
            "projected_monthly_cost_dollars": spent / max(now - started, 60.0) * HOURS_PER_MONTH * 3600,
        },
        "links": {
            "metrics": metrics_path,
            "healthz": "/healthz",
            "readyz": "/readyz",
            "status_json": "/api/status",
            "runbooks": "/runbooks",
            "docs": DOCS,
        },
        "limit": limit,
        "regions": _section(regions, limit),
        "models": models,
        "running_jobs": _section(running, limit),
        "finished_jobs": _section(finished, limit),
    }


# --- serving --------------------------------------------------------------------------------------------------------


def _asset(name: str) -> bytes:
    return resources.files("exporter").joinpath("assets", name).read_bytes()


# Served from package data (exporter/assets), read once at import.
_STATIC: Mapping[str, tuple[bytes, str]] = {
    "/static/status.css": (_asset("status.css"), "text/css; charset=utf-8"),
    "/static/status.js": (_asset("status.js"), "text/javascript; charset=utf-8"),
}


class StatusPage:
    """Answers `/`, `/api/status` and `/static/status.{css,js}` from the Store; never calls AWS."""

    def __init__(
        self,
        store: Store,
        metrics: SelfMetrics | None = None,
        clock: Callable[[], float] = time.time,
        metrics_path: str = "/metrics",
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._metrics_path = metrics_path
        self.started = clock()

    def respond(self, target: str) -> Response | None:
        """The answer for a request target (path and query), or None when the path is not ours."""
        path, _, query = target.partition("?")
        if path in _STATIC:
            body, content_type = _STATIC[path]
            return Response(200, body, content_type, {"Cache-Control": "no-cache"})
        if path not in ("/", "/api/status"):
            return None
        try:
            limit = _limit(query)
        except ValueError as exc:
            return Response(400, f"{exc}\n".encode(), TEXT)
        headers = {"Cache-Control": "no-store"}
        try:
            status = build_status(
                self._store.snapshot, self._clock(), self.started, self._metrics, limit, self._metrics_path
            )
            if path == "/":
                return Response(200, render_html(status).encode(), "text/html; charset=utf-8", headers)
            body = json.dumps(status, separators=(",", ":"), allow_nan=False).encode()
        except Exception:  # a bug in the page must not take down the request thread silently
            log.exception("building the status page failed")
            return Response(500, b"internal error building the status page; see the exporter log\n", TEXT, headers)
        return Response(200, body, "application/json", headers)


def _limit(query: str) -> int:
    values = parse_qs(query).get("limit")
    if not values:
        return DEFAULT_LIMIT
    text = values[-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)
