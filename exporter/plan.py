"""`plan`: what a config polls and what CloudWatch bills for it, per cycle, hour and month (docs/plan-and-doctor.md)."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from exporter import selfmetrics
from exporter.aws.bedrock import list_jobs
from exporter.aws.cloudwatch import list_series
from exporter.aws.session import AwsClients
from exporter.config import CloudWatchPricing, Config, NamespaceConfig, TargetConfig, defaults_for
from exporter.doctor import explain
from exporter.model import SeriesKey
from exporter.planner import plan, select_series
from exporter.tags import READS_PER_CYCLE

SCHEMA_VERSION = 1
HOURS_PER_MONTH = selfmetrics.HOURS_PER_MONTH
FIVE_MINUTES = 300.0
LIST_METRICS_PAGE = 500  # ListMetrics returns at most 500 metrics per page
DEFAULT_PRICES = (selfmetrics.PRICE_PER_METRIC_REQUESTED, selfmetrics.PRICE_PER_REQUEST)


@dataclass(frozen=True)
class Usage:
    """One scenario's hourly API use and its CloudWatch cost per month."""

    cycles_per_hour: float
    get_metric_data_calls_per_hour: float
    metrics_requested_per_hour: float
    list_metrics_requests_per_hour: float
    cost_per_month_dollars: float


@dataclass(frozen=True)
class NamespacePlan:
    """One namespace in one region of one target: per-cycle figures and three scenarios."""

    target: str
    region: str
    namespace: str
    interval_seconds: float
    series: int
    series_source: str  # list_metrics | static | estimate | none (Insights queries only)
    insights_queries: int
    queries_per_cycle: int
    get_metric_data_calls_per_cycle: int
    list_metrics_pages_per_refresh: int
    discovery_refresh_seconds: float
    job_aware: bool
    unfinished_jobs: int | None
    error: str | None
    full: Usage
    now: Usage | None
    at_5m: Usage
    # include_linked_accounts: the source accounts whose series ListMetrics named (None: not asked, or offline)
    linked_accounts: int | None = None


@dataclass(frozen=True)
class JobListingPlan:
    """The job collector in one region of one target (ListModelInvocationJobs; not a CloudWatch charge)."""

    target: str
    region: str
    interval_seconds: float
    pages_per_cycle: int
    requests_per_hour: float
    unfinished_jobs: int | None
    error: str | None
    # jobs.quotas: ListAWSDefaultServiceQuotas, ListServiceQuotas (one call per 100 quotas each) and
    # ListFoundationModels per refresh: at least 3 calls (None: jobs.quotas off)
    quota_calls_per_hour: float | None = None
    # jobs.tag_labels: one ListTagsForResource per finished job, at most this many per cycle (None: off)
    tag_reads_per_cycle_max: int | None = None


class _CallCounter:
    """An ApiRecorder that counts requests per (region, operation), retries included."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()

    def record_call(self, account_id: str, region: str, operation: str, outcome: str, retries: int) -> None:
        self.calls[(region, operation)] += 1 + retries


def _every(refresh: float, interval: float) -> float:
    """How often something due every `refresh` seconds, checked once per cycle of `interval`, really happens."""
    return max(1, math.ceil(refresh / interval)) * interval


def usage(
    queries: int,
    calls: int,
    pages: int,
    refresh: float,
    polled_every: float | None,
    prices: tuple[float, float] = DEFAULT_PRICES,
) -> Usage:
    """Hourly figures for a namespace polled every `polled_every` seconds (None: never), and its monthly cost."""
    if polled_every is None:
        return Usage(0.0, 0.0, 0.0, 0.0, 0.0)
    cycles = 3600 / polled_every
    list_per_hour = pages * 3600 / _every(refresh, polled_every)
    metrics = queries * cycles
    cost = (metrics * prices[0] + list_per_hour * prices[1]) * HOURS_PER_MONTH
    return Usage(cycles, calls * cycles, metrics, list_per_hour, round(cost, 6))


def build_plan(
    config: Config, offline: bool, series_per_metric: int = 1, now: float | None = None
) -> tuple[list[NamespacePlan], list[JobListingPlan]]:
    """Every (target, region, namespace) row and every job listing; live rows make one ListMetrics pass each."""
    now = time.time() if now is None else now
    counter = _CallCounter()
    clients = None if offline else AwsClients(config.aws, counter)
    rows: list[NamespacePlan] = []
    listings: list[JobListingPlan] = []
    for target in config.targets:
        namespaces = config.namespaces_for(target)
        for region in target.regions:
            unfinished: int | None = None
            if config.jobs.enabled and any(defaults_for(ns.namespace).follows_jobs for ns in namespaces):
                listing = _job_listing(config, target, region, clients, counter, now)
                listings.append(listing)
                unfinished = listing.unfinished_jobs
            for ns in namespaces:
                rows.append(
                    _namespace(config, target, region, ns, clients, counter, now, series_per_metric, unfinished)
                )
    return rows, listings


def _job_listing(
    config: Config, target: TargetConfig, region: str, clients: AwsClients | None, counter: _CallCounter, now: float
) -> JobListingPlan:
    jobs = config.jobs
    pages, unfinished, error = 1, None, None
    if clients is not None:
        before = counter.calls[(region, "ListModelInvocationJobs")]
        try:
            client = clients.client("bedrock", target, region)
            found = list_jobs(client, now - jobs.lookback, jobs.page_size)
            unfinished = sum(1 for job in found if not job.finished)
        except Exception as exc:  # reported in the row; polling fails open, so the plan assumes activity
            error = explain(exc)
        pages = max(1, counter.calls[(region, "ListModelInvocationJobs")] - before)
    quotas = 3 * 3600 / jobs.quotas.refresh_interval if jobs.quotas.enabled else None
    tags = READS_PER_CYCLE if jobs.tag_labels else None
    return JobListingPlan(
        target.label, region, jobs.interval, pages, pages * 3600 / jobs.interval, unfinished, error, quotas, tags
    )


def _namespace(
    config: Config,
    target: TargetConfig,
    region: str,
    ns: NamespaceConfig,
    clients: AwsClients | None,
    counter: _CallCounter,
    now: float,
    series_per_metric: int,
    unfinished: int | None,
) -> NamespacePlan:
    metrics, insights, discovery = ns.resolved_metrics(), ns.resolved_insights(), ns.discovery
    series: list[SeriesKey] = []
    pages, error, source, linked = 0, None, "none", None
    if metrics and discovery.mode == "static":
        source = "static"
        series = [SeriesKey.of(ns.namespace, m.name, dims) for m in metrics for dims in discovery.static]
    elif metrics and clients is None:
        source = "estimate"
        series = [
            SeriesKey.of(ns.namespace, m.name, {"estimate": str(i)}) for m in metrics for i in range(series_per_metric)
        ]
        pages = max(1, math.ceil(len(series) / LIST_METRICS_PAGE))
    elif metrics and clients is not None:
        source = "list_metrics"
        before = counter.calls[(region, "ListMetrics")]
        try:
            client = clients.client("cloudwatch", target, region)
            linking = target.include_linked_accounts
            own = clients.account_id(target) if linking else ""
            found = list_series(client, ns.namespace, discovery.recently_active, linking, own)
            series = select_series(found, metrics, discovery.dimension_filters)
            if linking:
                linked = len({key.account for key in found} - {""})
        except Exception as exc:
            error = explain(exc)
        pages = max(1, counter.calls[(region, "ListMetrics")] - before)
    batches = plan(series, metrics, now, config.aws.max_queries_per_call, insights)
    queries, calls = sum(b.size for b in batches), len(batches)
    jobs = config.jobs
    job_aware = (
        defaults_for(ns.namespace).follows_jobs
        and jobs.enabled
        and jobs.pause_idle_metrics
        and not target.include_linked_accounts  # as the poller: a monitoring account's polling never pauses
    )
    refresh = discovery.refresh_interval
    prices = config.pricing.cloudwatch.per_metric_and_request

    def scenario(interval: float, paused: bool) -> Usage:
        if not paused:
            return usage(queries, calls, pages, refresh, interval, prices)
        heartbeat = _every(jobs.idle_heartbeat, interval) if jobs.idle_heartbeat > 0 else None
        return usage(queries, calls, pages, refresh, heartbeat, prices)

    now_usage: Usage | None = None
    if clients is not None:  # unknown activity (listing failed) counts as active, as the poller fails open
        now_usage = scenario(ns.interval, job_aware and unfinished == 0)
    return NamespacePlan(
        target=target.label,
        region=region,
        namespace=ns.namespace,
        interval_seconds=ns.interval,
        series=len(series),
        series_source=source,
        insights_queries=len(insights),
        queries_per_cycle=queries,
        get_metric_data_calls_per_cycle=calls,
        list_metrics_pages_per_refresh=pages,
        discovery_refresh_seconds=refresh,
        job_aware=job_aware,
        unfinished_jobs=unfinished if job_aware else None,
        error=error,
        full=scenario(ns.interval, False),
        now=now_usage,
        at_5m=scenario(FIVE_MINUTES, False),
        linked_accounts=linked,
    )


def _total(usages: list[Usage | None]) -> Usage | None:
    if any(u is None for u in usages):
        return None
    known = [u for u in usages if u is not None]
    return Usage(*(round(sum(getattr(u, f) for u in known), 6) for f in Usage.__dataclass_fields__))


def to_document(
    config: Config, rows: list[NamespacePlan], listings: list[JobListingPlan], offline: bool, series_per_metric: int
) -> dict[str, Any]:
    """The `--output json` document (schema in docs/plan-and-doctor.md)."""
    startup = sum(1 for t in config.targets if not t.account_id and not t.role_arn)
    return {
        "schema_version": SCHEMA_VERSION,
        "offline": offline,
        "series_per_metric_assumed": series_per_metric if offline else None,
        "prices": {
            "dollars_per_metric_requested": config.pricing.cloudwatch.per_metric_and_request[0],
            "dollars_per_request": config.pricing.cloudwatch.per_metric_and_request[1],
            "hours_per_month": HOURS_PER_MONTH,
            "source": selfmetrics.PRICE_SOURCE
            if config.pricing.cloudwatch == CloudWatchPricing()
            else "pricing.cloudwatch in the config",
        },
        "namespaces": [asdict(row) for row in rows],
        "job_listings": [asdict(listing) for listing in listings],
        "startup": {"get_caller_identity_calls": startup},
        "totals": {
            "queries_per_cycle": sum(r.queries_per_cycle for r in rows),
            "get_metric_data_calls_per_cycle": sum(r.get_metric_data_calls_per_cycle for r in rows),
            "list_metrics_pages_per_refresh": sum(r.list_metrics_pages_per_refresh for r in rows),
            "job_listing_pages_per_cycle": sum(j.pages_per_cycle for j in listings),
            "job_listing_requests_per_hour": round(sum(j.requests_per_hour for j in listings), 6),
            "full": asdict(_total([r.full for r in rows]) or Usage(0, 0, 0, 0, 0)),
            "now": None if offline else asdict(_total([r.now for r in rows]) or Usage(0, 0, 0, 0, 0)),
            "at_5m": asdict(_total([r.at_5m for r in rows]) or Usage(0, 0, 0, 0, 0)),
        },
        "errors": sum(1 for r in rows if r.error) + sum(1 for j in listings if j.error),
    }


def _n(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _seconds(value: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{_n(value)}s"


def render_text(doc: dict[str, Any]) -> str:
    """The human-readable plan: one block per target/region/namespace, then the job listings and the totals."""
    out: list[str] = []
    prices = doc["prices"]
    if doc["offline"]:
        out.append(
            f"OFFLINE ESTIMATE from the config alone: {doc['series_per_metric_assumed']} dimension set(s) assumed per "
            "discovered metric (--series-per-metric), one ListMetrics page per refresh, activity now unknown."
        )
    else:
        out.append("Live: one ListMetrics pass per namespace and one job listing per region, made just now.")
    out.append(
        f"Prices: ${prices['dollars_per_metric_requested'] * 1000:.2f} per 1,000 metrics requested, "
        f"${prices['dollars_per_request'] * 1000:.2f} per 1,000 ListMetrics requests; month = "
        f"{prices['hours_per_month']} h. Source: {prices['source']}."
    )
    for row in doc["namespaces"]:
        out.append("")
        out.append(
            f"{row['target']} / {row['region']} / {row['namespace']}   every {_seconds(row['interval_seconds'])}"
        )
        if row["error"]:
            out.append(f"  ERROR         {row['error']} (figures below assume no series; see `doctor`)")
        source = {
            "list_metrics": "found by ListMetrics",
            "static": "static dimension sets",
            "estimate": "ESTIMATED",
            "none": "Insights queries only",
        }[row["series_source"]]
        insights = f" + {row['insights_queries']} Insights queries" if row["insights_queries"] else ""
        out.append(f"  series        {row['series']} ({source}){insights}")
        if row["linked_accounts"] is not None:
            out.append(
                f"  accounts      this monitoring account and {row['linked_accounts']} linked source account(s) "
                "(IncludeLinkedAccounts; series counted across all of them)"
            )
        pages = (
            f"; {row['list_metrics_pages_per_refresh']} ListMetrics page(s) per "
            f"{_seconds(row['discovery_refresh_seconds'])} refresh"
            if row["list_metrics_pages_per_refresh"]
            else ""
        )
        out.append(
            f"  per cycle     {row['queries_per_cycle']} queries in {row['get_metric_data_calls_per_cycle']} "
            f"GetMetricData call(s){pages}"
        )
        full = row["full"]
        out.append(
            f"  per hour      {_n(full['get_metric_data_calls_per_hour'])} GetMetricData calls, "
            f"{_n(full['metrics_requested_per_hour'])} metrics requested, "
            f"{_n(full['list_metrics_requests_per_hour'])} ListMetrics requests (full activity)"
        )
        if row["job_aware"]:
            jobs = row["unfinished_jobs"]
            state = (
                "unknown"
                if jobs is None
                else (f"{jobs} unfinished job(s): polled" if jobs else "no unfinished job: paused")
            )
            out.append(f"  jobs now      {state} (job-aware polling)")
        out.append("  cost/month    " + _costs(row))
    for listing in doc["job_listings"]:
        out.append("")
        out.append(
            f"{listing['target']} / {listing['region']} / job listing   every {_seconds(listing['interval_seconds'])}: "
            f"{listing['pages_per_cycle']} ListModelInvocationJobs page(s) per cycle, "
            f"{_n(listing['requests_per_hour'])} per hour (Bedrock control plane: no CloudWatch charge)"
        )
        if listing["quota_calls_per_hour"] is not None:
            out.append(
                f"  quotas        at least {_n(listing['quota_calls_per_hour'])} calls per hour (Service Quotas pages "
                "of 100 and ListFoundationModels, every jobs.quotas.refresh_interval)"
            )
        if (most := listing["tag_reads_per_cycle_max"]) is not None:
            out.append(f"  job tags      one ListTagsForResource per finished job, at most {most} per cycle")
        if listing["error"]:
            out.append(f"  ERROR         {listing['error']} (polling then continues as if jobs were running)")
    totals = doc["totals"]
    out.append("")
    out.append("Totals")
    out.append(
        f"  per cycle     {totals['queries_per_cycle']} queries in {totals['get_metric_data_calls_per_cycle']} "
        f"GetMetricData calls; {totals['list_metrics_pages_per_refresh']} ListMetrics pages per refresh; "
        f"{totals['job_listing_pages_per_cycle']} job listing pages"
    )
    full = totals["full"]
    out.append(
        f"  per hour      {_n(full['get_metric_data_calls_per_hour'])} GetMetricData calls, "
        f"{_n(full['metrics_requested_per_hour'])} metrics requested, "
        f"{_n(full['list_metrics_requests_per_hour'])} ListMetrics requests, "
        f"{_n(totals['job_listing_requests_per_hour'])} job listings"
    )
    out.append("  cost/month    " + _costs(totals))
    if doc["startup"]["get_caller_identity_calls"]:
        out.append(
            f"  at start-up   {doc['startup']['get_caller_identity_calls']} STS GetCallerIdentity call(s) "
            "(targets without account_id; free)"
        )
    return "\n".join(out) + "\n"


def _costs(row: dict[str, Any]) -> str:
    now = "unknown offline" if row["now"] is None else f"${row['now']['cost_per_month_dollars']:,.2f}"
    return (
        f"${row['full']['cost_per_month_dollars']:,.2f} at full activity | {now} at job activity now | "
        f"${row['at_5m']['cost_per_month_dollars']:,.2f} at a 5m interval"
    )


def run_plan(config: Config, offline: bool, output: str, series_per_metric: int = 1) -> int:
    """The `plan` command: prints the plan; exit 1 when a live look-up failed, else 0."""
    # botocore logs a failed assume-role refresh with its traceback; the report names the cause in one line instead
    logging.getLogger("botocore.credentials").setLevel(logging.ERROR)
    rows, listings = build_plan(config, offline, series_per_metric)
    doc = to_document(config, rows, listings, offline, series_per_metric)
    if output == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(render_text(doc))
    return 1 if doc["errors"] else 0
