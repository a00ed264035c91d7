"""The status page's HTML: one page rendered from the status dict (exporter.sinks.status), readable without JS.

Every value shown is escaped: model IDs, job names and error messages come from outside.
"""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]
MAX_LIMIT = 10_000
REFRESH_SECONDS = 5


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
        (
            "CloudWatch API spend",
            f"{_dollars(su['cost_dollars'])} <span class='muted small'>since start</span><br>"
            f"{_dollars(su['projected_monthly_cost_dollars'])} <span class='muted small'>a month if the "
            f"{_duration(ex['uptime_seconds'])} since start repeat (an extrapolation)</span>",
        ),
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
    running_dropped = task.get("jobs_dropped", {}).get("running", 0)
    if running_dropped:
        partial += (
            f'<div class="error">{running_dropped:,} running jobs over the jobs.max_jobs budget are not exported '
            "(bedrock_batch_exporter_jobs_dropped_total)</div>"
        )
    series_dropped = task.get("series_dropped", 0)
    if series_dropped:
        partial += (
            f'<div class="error">{series_dropped:,} series over discovery.max_series are not polled '
            "(bedrock_batch_exporter_series_not_polled)</div>"
        )
    unmatched = task.get("quotas_unmatched", [])
    if unmatched:
        names = "; ".join(_e(name) for name in unmatched[:10]) + ("; ..." if len(unmatched) > 10 else "")
        partial += (
            f'<div class="warn">{len(unmatched):,} per-model batch quotas matched no model by name (map them with '
            f"jobs.quotas.model_map): {names}</div>"
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
            lead = tail = ""
            if i == 0:
                lead = (
                    f'<td rowspan="{span}"><strong>{_e(region["target"])}</strong><br>'
                    f'<span class="muted small">{_e(region["account_id"] or "account unknown")}</span></td>'
                    f'<td rowspan="{span}" class="nowrap">{_e(region["region"])}</td>'
                )
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
        price = model["batch_price"]
        price_cell = (
            '<span class="warn">no price</span><br><span class="muted small">add it under pricing.models</span>'
            if price is None
            else f"${price['input']:g} in<br>${price['output']:g} out"
        )
        quota = model.get("quota")
        if quota is not None:
            full = quota["in_use"] >= quota["limit"]
            waiting = f" · {quota['waiting']:,} waiting" if quota["waiting"] else ""
            jobs += (
                f"<br><span class='small{' bad' if full and quota['waiting'] else ''}' title='Service Quotas "
                f"{_e(quota['quota_code'])} ({_e(quota['source'])} value)'>quota: {quota['in_use']:,} of "
                f"{quota['limit']:g} slots{waiting}</span>"
            )
        if model["finished_jobs_cost_dollars"] is not None:
            jobs += f"<br><span class='small'>finished: {_dollars(model['finished_jobs_cost_dollars'])}</span>"
        read = "—" if model["refreshed"] is None else f"{_duration(model['refreshed_age_seconds'])} ago"
        rows.append(
            f'<tr><td><strong class="model-id">{_e(model["model_id"])}</strong><br><span class="muted small">'
            f"account {_e(model['account_id'])}</span></td><td class='nowrap'>{_e(model['region'])}</td>"
            f"{''.join(tds)}<td class='small nowrap'>{jobs or _NONE}</td><td class='small nowrap'>{price_cell}</td>"
            f"<td class='small'>{read}</td></tr>"
        )
    if not rows:
        return '<p class="muted">No model has CloudWatch series or batch jobs yet.</p>'
    heads = "".join(f'<th class="num">{_e(_metric_title(c))}</th>' for c in columns)
    head = (
        f"<tr><th>Model</th><th>Region</th>{heads}<th>Batch jobs</th><th>Batch price per 1M tokens</th>"
        "<th>Values read</th></tr>"
    )
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


def _usage(job: JSON) -> str:
    """A finished job's exact tokens and cost from its manifest, or why they are not shown."""
    tags = "".join(
        f"<br><span class='muted small'>{_e(key)}={_e(value) if value else '(none)'}</span>"
        for key, value in job.get("tags", {}).items()
    )
    if job["input_tokens"] is None:
        return f'<span class="muted">no manifest read</span>{tags}'
    cost = job["cost_dollars"]
    shown = _dollars(cost) if cost is not None else '<span class="warn">no price</span>'
    used = f"{_number(job['input_tokens'])} in<br>{_number(job['output_tokens'])} out<br><strong>{shown}</strong>"
    return used + tags


MESSAGE_SHOWN = 500  # characters of a job's message in the table; /api/status has all AWS sent (at most 2,048)


def _failure(job: JSON) -> str:
    """Why a job failed: its reason class, the start of AWS's message (escaped), and what to check, with runbook."""
    reason = job.get("failure_reason")
    if reason is None:
        return ""
    message = job.get("message") or ""
    cut = message[:MESSAGE_SHOWN] + ("…" if len(message) > MESSAGE_SHOWN else "")
    checks = [
        (label, job.get(key))
        for label, key in (("role", "role_arn"), ("input", "input_s3_uri"), ("KMS key", "kms_key_id"))
        if job.get(key)
    ]
    if job.get("subnet_ids"):
        checks.append(("VPC subnets", ", ".join(job["subnet_ids"])))
    details = "".join(f"<br><span class='muted small'>{_e(k)}: {_e(v)}</span>" for k, v in checks)
    anchor = f"runbooks#job-failure-{reason}"  # scripts/build-runbooks' anchors keep the underscore
    return (
        f"<br><a class='warn small' href='{_e(anchor)}'>{_e(reason)}</a>"
        f"<br><span class='small failure'>{_e(cut)}</span>{details}"
    )


def _jobs_html(section: JSON, finished: bool) -> str:
    rows = []
    for job in section["items"]:
        name = (
            f'<strong class="job-name">{_e(job["job_name"])}</strong><br><span class="muted small" '
            f'title="{_e(job["job_arn"])}">{_e(job["job_arn"].rsplit("/", 1)[-1])}</span>'
        )
        where = f'{_e(job["model_id"])}<br><span class="muted small">{_e(job["region"])}</span>'
        status = _e(job["status"] or "unknown") + _failure(job)
        cells = (
            f"<td class='small nowrap'>{_usage(job)}</td><td>{_time(job['ended'])}</td>"
            if finished
            else f"<td>{_duration(job['since_submit_seconds'])} ago</td><td>{_expiry(job)}</td>"
        )
        rows.append(
            f"<tr><td>{name}</td><td>{where}</td><td>{status}</td><td class='wide'>{_bar(job)}</td>{cells}</tr>"
        )
    if not rows:
        what = "finished job retained" if finished else "unfinished batch job"
        return f'<p class="muted">No {what}.</p>'
    last = "<th>Tokens and cost</th><th>Ended</th>" if finished else "<th>Submitted</th><th>Expires</th>"
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
            ("runbooks", links["runbooks"]),
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
