"""The status page at `/` and its JSON at `/api/status`: one dict built from the Snapshot, rendered two ways.

Nothing here calls AWS: the dict comes from the Store's current Snapshot and the self-metrics counters. Every value
shown in HTML is escaped, since model IDs, job names and error messages come from outside.
"""

from __future__ import annotations

import html
import json
import logging
import math
import platform
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import Counter as PromCounter

from exporter import __version__
from exporter.http import Response
from exporter.model import BEDROCK_BATCH_NAMESPACE, CloudWatchValue, TaskState
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import Snapshot, Store

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: models[].metrics is a list of CloudWatch metric/statistic records; tasks[].partial
DEFAULT_LIMIT = 200  # rows per section; keeps the page small and fast at 10,000 series
MAX_LIMIT = 10_000
REFRESH_SECONDS = 5
# The page names its documentation instead of linking a hosting site: the docs ship with the source.
DOCS = "docs/status.md and docs/metrics.md in the bedrock-batch-exporter source"

MODEL_DIMENSION = "ModelId"

JSON = dict[str, Any]
_TEXT = "text/plain; charset=utf-8"

_HEALTH_RANK = {"down": 0, "up": 1, "paused": 1}
_NO_CYCLES: Mapping[str, int] = {"success": 0, "error": 0}


# --- the dict -----------------------------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return value if value is not None and math.isfinite(value) else None


def _ago(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 3)


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
    out: defaultdict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: {"success": 0, "error": 0})
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
        health = min((t["health"] for t in tasks), key=lambda h: _HEALTH_RANK[h])
        out.append(
            {
                "target": target,
                "account_id": account_id,
                "region": region,
                "health": "down" if health == "down" else "up",
                "series": sum(t["series"] for t in tasks),
                "aws_api": usage.get((account_id, region), _empty_usage()),
                "tasks": tasks,
            }
        )
    out.sort(key=lambda r: (r["health"] != "down", r["target"], r["account_id"], r["region"]))
    return out


def _models(snapshot: Snapshot, now: float, limit: int) -> JSON:
    """The section of models; only the `limit` shown are built in full, so 10,000 series stay cheap."""
    series: defaultdict[tuple[str, str, str], list[tuple[CloudWatchValue, TaskState]]] = defaultdict(list)
    jobs: defaultdict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for state in snapshot.tasks.values():
        region = state.key.region
        for value in state.values:
            if value.series.namespace != BEDROCK_BATCH_NAMESPACE:
                continue
            model = dict(value.series.dimensions).get(MODEL_DIMENSION)
            if model is not None:
                series[(state.account_id, region, model)].append((value, state))
        for job in state.jobs:
            counts = jobs[(state.account_id, region, job.model_id)]
            counts[job.status] = counts.get(job.status, 0) + 1
    prices = {p.model_id: p for p in snapshot.prices}
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
        price = prices.get(key[2])
        items.append(
            {
                "account_id": key[0],
                "region": key[1],
                "model_id": key[2],
                "refreshed": refreshed,
                "refreshed_age_seconds": _ago(now, refreshed),
                "metrics": metrics,
                "jobs_by_status": jobs.get(key, {}),
                "batch_price": None if price is None else {"input": price.input, "output": price.output},
            }
        )
    return {"total": len(keys), "shown": len(items), "items": items}


def _jobs(snapshot: Snapshot, now: float) -> list[JSON]:
    out = []
    for state in snapshot.tasks.values():
        for job in state.jobs:
            total, processed = job.total_records, job.processed_records
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
                    "progress": round(min(processed / total, 1.0), 4) if total and processed is not None else None,
                    "since_submit_seconds": _ago(now, job.submit_time),
                    "to_expiration_seconds": None
                    if job.expiration_time is None
                    else round(job.expiration_time - now, 3),
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
    models = _models(snapshot, now, limit)
    jobs = _jobs(snapshot, now)
    running = sorted(
        (j for j in jobs if not j["finished"]),
        key=lambda j: (j["expires"] is None, j["expires"] or 0.0, j["job_name"], j["job_arn"]),
    )
    finished = sorted(
        (j for j in jobs if j["finished"]), key=lambda j: (-(j["ended"] or j["submitted"] or 0.0), j["job_arn"])
    )
    down = sum(1 for t in tasks if t["health"] == "down")
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
            "cost_dollars": sum(u["cost_dollars"] for u in usage.values()),
        },
        "links": {
            "metrics": metrics_path,
            "healthz": "/healthz",
            "readyz": "/readyz",
            "status_json": "/api/status",
            "docs": DOCS,
        },
        "limit": limit,
        "regions": _section(regions, limit),
        "models": models,
        "running_jobs": _section(running, limit),
        "finished_jobs": _section(finished, limit),
    }


# --- HTML -----------------------------------------------------------------------------------------------------------


_DASH = '<span class="muted">—</span>'
_NONE = '<span class="muted">none</span>'


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _dollars(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    minutes, s = divmod(s, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if minutes < 10 and s else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _time(stamp: float | None) -> str:
    if stamp is None:
        return "—"
    moment = datetime.fromtimestamp(stamp, UTC)
    iso = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{iso}">{moment:%Y-%m-%d %H:%M:%S} UTC</time>'


def _when(stamp: float | None, age: float | None) -> str:
    """An absolute time with its age, e.g. '12 s ago'."""
    if stamp is None:
        return '<span class="muted">never</span>'
    return f'{_duration(age)} ago<br><span class="muted small">{_time(stamp)}</span>'


def _badge(health: str) -> str:
    return f'<span class="badge {_e(health)}">{_e(health)}</span>'


def _more(section: JSON, what: str) -> str:
    hidden = section["total"] - section["shown"]
    if hidden <= 0:
        return ""
    return (
        f'<p class="more">{hidden:,} more {_e(what)} not shown (showing {section["shown"]:,} of '
        f"{section['total']:,}; add <code>?limit=N</code>, up to {MAX_LIMIT:,}, or read "
        f'<a href="api/status?limit={MAX_LIMIT}">api/status</a>).</p>'
    )


def _summary(status: JSON) -> str:
    ex, su = status["exporter"], status["summary"]
    paused = f", {su['tasks_paused']:,} paused" if su["tasks_paused"] else ""
    down = f'<span class="bad">, {su["tasks_down"]:,} down</span>' if su["tasks_down"] else ""
    cards = [
        ("Health", f"{_badge(ex['health'])} {'ready' if ex['ready'] else 'not ready'}"),
        (
            "Uptime",
            f"{_duration(ex['uptime_seconds'])}<br><span class='muted small'>since {_time(ex['started'])}</span>",
        ),
        ("Poll tasks", f"{su['tasks_up']:,} of {su['tasks']:,} up{paused}{down}"),
        ("Series", f"{su['series']:,}"),
        ("Models", f"{su['models']:,}"),
        ("Batch jobs", f"{su['jobs_running']:,} running, {su['jobs_finished']:,} recently finished"),
        (
            "AWS API calls",
            f"{su['aws_api_requests']:,} ({su['aws_api_errors']:,} failed)<br>"
            f"<span class='muted small'>{su['metrics_requested']:,} metrics requested</span>",
        ),
        ("Estimated spend", f"{_dollars(su['cost_dollars'])}<br><span class='muted small'>since start</span>"),
    ]
    items = "".join(
        f'<div class="card"><div class="label">{_e(k)}</div><div class="value">{v}</div></div>' for k, v in cards
    )
    return f'<section id="summary" class="cards">{items}</section>'


def _error_cell(task: JSON) -> str:
    error = task["last_error"]
    partial = ""
    if task["partial"]:
        codes = ", ".join(f"{_e(code)} x{n:,}" for code, n in sorted(task["result_errors"].items()))
        said = "; ".join(_e(m) for m in task["result_messages"])
        partial = (
            f'<div class="error">partial: CloudWatch answered some series with errors ({codes}); they keep their '
            f"last value for a few intervals, then disappear{': ' + said if said else ''}</div>"
        )
    if error is None:
        return partial or _NONE
    failures = task["consecutive_failures"]
    count = f"{failures:,} in a row" if failures else "recovered"
    total = task["cycles"].get("error", 0)
    return (
        f'{partial}<div class="error">{_e(error["message"])}</div>'
        f'<span class="muted small">{_duration(error["age_seconds"])} ago · {count} · {total:,} failed cycles in all'
        f"</span>"
    )


def _regions_html(section: JSON) -> str:
    rows = []
    for region in section["items"]:
        api = region["aws_api"]
        outcomes = ", ".join(f"{_e(k)} {v:,}" for k, v in sorted(api["by_outcome"].items()) if k != "success")
        api_cell = (
            f"{api['requests']:,} calls"
            + (f' <span class="bad">({outcomes})</span>' if outcomes else "")
            + f"<br><span class='muted small'>{api['metrics_requested']:,} metrics · {api['retries']:,} retries</span>"
        )
        span = len(region["tasks"])
        for i, task in enumerate(region["tasks"]):
            lead = ""
            if i == 0:
                lead = (
                    f'<td rowspan="{span}"><strong>{_e(region["target"])}</strong><br>'
                    f'<span class="muted small">{_e(region["account_id"] or "account unknown")}</span></td>'
                    f'<td rowspan="{span}" class="nowrap">{_e(region["region"])}</td>'
                )
            tail = ""
            if i == 0:
                tail = f'<td rowspan="{span}">{api_cell}</td><td rowspan="{span}" class="num">'
                tail += f"{_dollars(api['cost_dollars'])}</td>"
            polling = "active" if task["polling_active"] else '<span class="muted">paused (no unfinished job)</span>'
            rows.append(
                f"<tr>{lead}<td><code>{_e(task['namespace'])}</code></td><td>{_badge(task['health'])}</td>"
                f"<td>{_when(task['last_success'], task['last_success_age_seconds'])}</td>"
                f"<td>{_error_cell(task)}</td><td class='num'>{task['series']:,}</td><td>{polling}</td>{tail}</tr>"
            )
    if not rows:
        return '<p class="muted">No poll cycle has finished yet.</p>'
    head = (
        "<tr><th>Target</th><th>Region</th><th>Namespace</th><th>Health</th><th>Last success</th>"
        "<th>Last error</th><th class='num'>Series</th><th>Polling</th><th>AWS API calls</th>"
        "<th class='num'>Est. spend</th></tr>"
    )
    return f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'


_STAT_SHORT = {"Maximum": "max", "Average": "avg", "Minimum": "min", "SampleCount": "count", "Sum": "sum"}
# The Bedrock batch metrics in the order people read them: backlog first, then throughput.
_METRIC_ORDER = (
    "NumberOfRecordsPendingProcessing",
    "NumberOfTokensPendingProcessing",
    "NumberOfInputTokensProcessedPerMinute",
    "NumberOfOutputTokensProcessedPerMinute",
)


def _metric_title(metric: str) -> str:
    """`NumberOfInputTokensProcessedPerMinute` -> `input tokens per minute`."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", metric.removeprefix("NumberOf")).lower()
    return words.replace(" processed per minute", " per minute")


def _models_html(section: JSON) -> str:
    split = [
        [
            (p["metric"], _STAT_SHORT.get(p["statistic"], p["statistic"]), f"{p['metric']} {p['statistic']}", p)
            for p in m["metrics"]
        ]
        for m in section["items"]
    ]
    columns = sorted(
        {metric for cells in split for metric, *_ in cells},
        key=lambda c: (_METRIC_ORDER.index(c) if c in _METRIC_ORDER else len(_METRIC_ORDER), c),
    )
    rows = []
    for model, cells in zip(section["items"], split, strict=True):
        tds = []
        for column in columns:
            parts = []
            for _, stat, name, point in sorted((c for c in cells if c[0] == column), key=lambda c: c[1]):
                value = "NaN" if point["value"] is None else _number(point["value"])
                age = "" if point["timestamp"] is None else f" · {_duration(point['age_seconds'])} ago"
                if point["stale"]:
                    age += " · kept from an earlier cycle: CloudWatch answered this series with an error"
                    value += " (stale)"
                parts.append(
                    f'<div title="{_e(name)}{_e(age)}">{_e(value)} <span class="muted small">{_e(stat)}</span></div>'
                )
            tds.append(f'<td class="num">{"".join(parts) or _DASH}</td>')
        jobs = "<br>".join(f"{n:,} {_e(status)}" for status, n in sorted(model["jobs_by_status"].items()))
        read = "—" if model["refreshed"] is None else f"{_duration(model['refreshed_age_seconds'])} ago"
        rows.append(
            f'<tr><td><strong class="model-id">{_e(model["model_id"])}</strong><br><span class="muted small">'
            f"account {_e(model['account_id'])}</span></td><td class='nowrap'>{_e(model['region'])}</td>"
            f"{''.join(tds)}<td class='small nowrap'>{jobs or _NONE}</td><td class='small'>{read}</td></tr>"
        )
    if not rows:
        return '<p class="muted">No model has CloudWatch series or batch jobs yet.</p>'
    heads = "".join(f'<th class="num">{_e(_metric_title(c))}</th>' for c in columns)
    head = f"<tr><th>Model</th><th>Region</th>{heads}<th>Batch jobs</th><th>Values read</th></tr>"
    return (
        f'<div class="scroll"><table class="models"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    )


def _bar(job: JSON) -> str:
    total = job["total_records"]
    if not total:
        return '<span class="muted">record counts not reported yet</span>'
    processed = job["processed_records"] or 0.0
    ok = job["succeeded_records"] or 0.0
    failed = job["failed_records"] or 0.0
    other = max(processed - ok - failed, 0.0)
    label = (
        f"{_number(processed)} of {_number(total)} records processed ({100 * processed / total:.1f}%): "
        f"{_number(ok)} succeeded, {_number(failed)} failed"
    )
    parts, x = [], 0.0
    for cls, amount in (("ok", ok), ("failed", failed), ("other", other)):
        width = 100.0 * min(amount, total) / total
        if width > 0:
            parts.append(f'<rect class="{cls}" x="{x:.2f}%" y="0" width="{min(width, 100 - x):.2f}%" height="100%"/>')
            x = min(x + width, 100.0)
    return (
        f'<svg class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="{total:.0f}" '
        f'aria-valuenow="{processed:.0f}" aria-label="{_e(label)}" width="100%" height="14">'
        f'<title>{_e(label)}</title><rect class="track" x="0" y="0" width="100%" height="100%"/>{"".join(parts)}</svg>'
        f'<div class="small">{_e(label)}</div>'
    )


def _expiry(job: JSON) -> str:
    left = job["to_expiration_seconds"]
    if left is None:
        return _DASH
    if left < 0:
        return f'<span class="bad">expired {_duration(-left)} ago</span>'
    cls = "warn" if left < 6 * 3600 else ""
    return (
        f'<span class="{cls}">in {_duration(left)}</span><br><span class="muted small">{_time(job["expires"])}</span>'
    )


def _jobs_html(section: JSON, finished: bool) -> str:
    rows = []
    for job in section["items"]:
        name = (
            f'<strong class="job-name">{_e(job["job_name"])}</strong><br><span class="muted small" '
            f'title="{_e(job["job_arn"])}">{_e(job["job_arn"].rsplit("/", 1)[-1])}</span>'
        )
        where = f'{_e(job["model_id"])}<br><span class="muted small">{_e(job["region"])}</span>'
        status = _e(job["status"] or "unknown")
        if finished:
            ended = _time(job["ended"])
            rows.append(
                f"<tr><td>{name}</td><td>{where}</td><td>{status}</td><td class='wide'>{_bar(job)}</td>"
                f"<td>{ended}</td></tr>"
            )
        else:
            rows.append(
                f"<tr><td>{name}</td><td>{where}</td><td>{status}</td><td class='wide'>{_bar(job)}</td>"
                f"<td>{_duration(job['since_submit_seconds'])} ago</td><td>{_expiry(job)}</td></tr>"
            )
    if not rows:
        what = "finished job retained" if finished else "unfinished batch job"
        return f'<p class="muted">No {what}.</p>'
    last = "<th>Ended</th>" if finished else "<th>Submitted</th><th>Expires</th>"
    head = f"<tr><th>Job</th><th>Model</th><th>Status</th><th>Progress</th>{last}</tr>"
    return f'<div class="scroll"><table class="jobs"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'


def render_html(status: JSON) -> str:
    """The status page; readable without JavaScript (status.js only refreshes it in place)."""
    ex, links = status["exporter"], status["links"]
    nav = " ".join(
        f'<a href="{_e(href.lstrip("/") or ".")}">{_e(text)}</a>'
        for text, href in (
            (links["metrics"], links["metrics"]),
            ("/healthz", links["healthz"]),
            ("/readyz", links["readyz"]),
            ("JSON", links["status_json"]),
        )
    )
    nav += f' <span class="muted">docs: {_e(links["docs"])}</span>'
    regions, models = status["regions"], status["models"]
    running, finished = status["running_jobs"], status["finished_jobs"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bedrock-batch-exporter status</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="static/status.css">
<script src="static/status.js" defer></script>
</head><body>
<header><h1>bedrock-batch-exporter <span class="muted">{_e(ex["version"])}</span></h1>
<nav>{nav}<span id="refresh"></span></nav></header>
<main id="status" data-refresh="{REFRESH_SECONDS}">
{_summary(status)}
<section id="regions"><h2>Targets and regions <span class="count">{regions["total"]:,}</span></h2>
{_regions_html(regions)}{_more(regions, "regions")}</section>
<section id="models"><h2>Models <span class="count">{models["total"]:,}</span></h2>
{_models_html(models)}{_more(models, "models")}</section>
<section id="jobs"><h2>Running batch jobs <span class="count">{running["total"]:,}</span></h2>
{_jobs_html(running, finished=False)}{_more(running, "running jobs")}</section>
<section id="finished-jobs"><h2>Recently finished jobs <span class="count">{finished["total"]:,}</span></h2>
{_jobs_html(finished, finished=True)}{_more(finished, "finished jobs")}</section>
<footer class="muted small">Page built {_time(ex["now"])} from snapshot {ex["snapshot_version"]:,}
(published {_duration(ex["snapshot_age_seconds"])} ago) · Python {_e(ex["python_version"])} ·
nothing on this page calls AWS.</footer>
</main>
</body></html>
"""


# --- serving --------------------------------------------------------------------------------------------------------


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

    def status(self, limit: int = DEFAULT_LIMIT) -> JSON:
        return build_status(self._store.snapshot, self._clock(), self.started, self._metrics, limit, self._metrics_path)

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
            return Response(400, f"{exc}\n".encode(), _TEXT)
        headers = {"Cache-Control": "no-store"}
        try:
            status = self.status(limit)
            if path == "/":
                return Response(200, render_html(status).encode(), "text/html; charset=utf-8", headers)
            body = json.dumps(status, separators=(",", ":"), allow_nan=False).encode()
        except Exception:  # a bug in the page must not take down the request thread silently
            log.exception("building the status page failed")
            return Response(500, b"internal error building the status page; see the exporter log\n", _TEXT, headers)
        return Response(200, body, "application/json", headers)


def _limit(query: str) -> int:
    values = parse_qs(query).get("limit")
    if not values:
        return DEFAULT_LIMIT
    text = values[-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


_CSS = """
:root { --bg: #f5f6f8; --fg: #1d2430; --muted: #667085; --card: #fff; --line: #e3e6eb; --ok: #1a7f37;
  --bad: #c62828; --warn: #b26a00; --other: #7a8699; --track: #e8ebf0; --accent: #2f5bd3; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #12151b; --fg: #e4e7ec; --muted: #98a2b3; --card: #1b2029; --line: #2c3340; --track: #2c3340;
    --accent: #8fb0ff; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg);
  color: var(--fg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: 8px 24px;
  padding: 14px 24px; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 16px; margin: 28px 0 10px; }
h3 { font-size: 14px; margin: 0; }
nav a { margin-right: 14px; color: var(--accent); }
#refresh { color: var(--muted); font-size: 12px; }
#refresh button { font: inherit; margin-left: 6px; }
main { padding: 8px 24px 24px; max-width: 1500px; }
.muted { color: var(--muted); }
.small { font-size: 12px; }
.bad { color: var(--bad); }
.warn { color: var(--warn); }
.nowrap { white-space: nowrap; }
.count { color: var(--muted); font-weight: normal; }
code { font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; margin-top: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 16px; margin-top: 2px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
  color: #fff; background: var(--other); }
.badge.up, .badge.ok { background: var(--ok); }
.badge.down { background: var(--bad); }
.badge.degraded { background: var(--warn); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); }
th, td { text-align: left; vertical-align: top; padding: 6px 10px; border-bottom: 1px solid var(--line); }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.error { color: var(--bad); max-width: 380px; overflow-wrap: anywhere; }
.models th.num { white-space: normal; min-width: 110px; }
.model-id { overflow-wrap: anywhere; }
.jobs td.wide { min-width: 260px; width: 34%; }
.jobs .muted.small { overflow-wrap: anywhere; }
svg.bar { display: block; border-radius: 4px; overflow: hidden; margin: 3px 0; }
svg.bar .track { fill: var(--track); }
svg.bar .ok { fill: var(--ok); }
svg.bar .failed { fill: var(--bad); }
svg.bar .other { fill: var(--other); }
.more { color: var(--muted); font-style: italic; }
footer { margin-top: 28px; }
"""

_JS = """"use strict";
// Refreshes the status page in place: fetches the same URL and swaps in the new <main> (rendered by the server,
// so there is one renderer). Without JavaScript the page is complete; reload it to update.
(function () {
  var main = document.getElementById("status");
  var slot = document.getElementById("refresh");
  if (!main || !slot || !window.fetch || !window.DOMParser) {
    return;
  }
  var period = 1000 * (parseInt(main.getAttribute("data-refresh"), 10) || 5);
  var paused = false;
  var state = document.createElement("span");
  var button = document.createElement("button");
  button.type = "button";
  button.textContent = "pause";
  slot.appendChild(state);
  slot.appendChild(button);
  state.textContent = "auto-refresh every " + period / 1000 + " s";
  button.addEventListener("click", function () {
    paused = !paused;
    button.textContent = paused ? "resume" : "pause";
    state.textContent = paused ? "auto-refresh paused" : "auto-refresh every " + period / 1000 + " s";
  });
  function refresh() {
    if (paused || document.hidden) {
      window.setTimeout(refresh, period);
      return;
    }
    window.fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("status");
        if (fresh) {
          main.replaceWith(fresh);
          main = fresh;
          document.documentElement.setAttribute("data-refreshed", String(Date.now()));
          state.textContent = "auto-refresh every " + period / 1000 + " s";
        }
      })
      .catch(function (error) {
        state.textContent = "refresh failed (" + error.message + "), retrying";
      })
      .then(function () {
        window.setTimeout(refresh, period);
      });
  }
  window.setTimeout(refresh, period);
})();
"""

_STATIC: Mapping[str, tuple[bytes, str]] = {
    "/static/status.css": (_CSS.lstrip().encode(), "text/css; charset=utf-8"),
    "/static/status.js": (_JS.encode(), "text/javascript; charset=utf-8"),
}
