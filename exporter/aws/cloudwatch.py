"""CloudWatch calls: ListMetrics discovery and GetMetricData execution, with answer checking."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.aws.errors import BadAnswerError
from exporter.model import SeriesKey
from exporter.planner import Batch

log = logging.getLogger(__name__)

MAX_PAGES = 1000  # a bound on NextToken chains; CloudWatch never needs nearly this many


@dataclass(frozen=True, slots=True)
class Datapoint:
    """The newest value CloudWatch returned for one query."""

    value: float
    timestamp: float


def list_series(client: Any, namespace: str, recently_active: bool) -> list[SeriesKey]:
    """Every (metric, dimension set) in the namespace, following NextToken through botocore's paginator."""
    kwargs: dict[str, Any] = {"Namespace": namespace}
    if recently_active:
        kwargs["RecentlyActive"] = "PT3H"
    found: set[SeriesKey] = set()
    paginator = client.get_paginator("list_metrics")
    for page in paginator.paginate(**kwargs, PaginationConfig={"MaxItems": 500 * MAX_PAGES}):
        found.update(parse_list_metrics_page(page, namespace))
    return sorted(found)


def parse_list_metrics_page(page: Mapping[str, Any], namespace: str) -> list[SeriesKey]:
    """SeriesKeys from one ListMetrics page; entries of other namespaces or with a broken shape are skipped."""
    metrics = page.get("Metrics")
    if not isinstance(metrics, list):
        raise BadAnswerError("ListMetrics answer has no Metrics list")
    out = []
    for entry in metrics:
        try:
            if entry.get("Namespace", namespace) != namespace:
                continue
            dims = {str(d["Name"]): str(d["Value"]) for d in entry.get("Dimensions") or ()}
            out.append(SeriesKey.of(namespace, str(entry["MetricName"]), dims))
        except (KeyError, TypeError, AttributeError):
            log.warning("skipping a malformed ListMetrics entry in %s", namespace)
    return out


def run_batch(
    client: Any, batch: Batch, on_page: Callable[[int], None] | None = None
) -> tuple[dict[str, Datapoint], dict[str, dict[str, Datapoint]]]:
    """Run one batch to the last page: the newest datapoint per statistic query id, and per Insights query id and
    result Label (an Insights GROUP BY query answers with one result per group, all under its id)."""
    kwargs: dict[str, Any] = {
        "MetricDataQueries": [q.to_api() for q in batch.queries] + [e.to_api() for e in batch.expressions],
        "StartTime": datetime.fromtimestamp(batch.start, UTC),
        "EndTime": datetime.fromtimestamp(batch.end, UTC),
        "ScanBy": "TimestampDescending",
    }
    ids = {q.id for q in batch.queries}
    newest: dict[str, Datapoint] = {}
    grouped: dict[str, dict[str, Datapoint]] = {e.id: {} for e in batch.expressions}
    seen_tokens: set[str] = set()
    for _ in range(MAX_PAGES):
        answer = client.get_metric_data(**kwargs)
        if on_page is not None:
            on_page(batch.size)
        merge_results(newest, answer.get("MetricDataResults"), ids, grouped)
        for message in answer.get("Messages") or ():
            log.info("GetMetricData message: %s", message.get("Value", message))
        token = answer.get("NextToken")
        if not token:
            return newest, grouped
        if token in seen_tokens:
            raise BadAnswerError("GetMetricData returned the same NextToken twice")
        seen_tokens.add(token)
        kwargs["NextToken"] = token
    raise BadAnswerError(f"GetMetricData pagination did not end after {MAX_PAGES} pages")


def merge_results(
    newest: dict[str, Datapoint],
    results: Iterable[Any] | None,
    ids: set[str],
    grouped: dict[str, dict[str, Datapoint]] | None = None,
) -> None:
    """Fold one page of MetricDataResults into `newest`, keeping the latest timestamp per id; results of the ids in
    `grouped` (Insights queries) are kept per id and Label instead."""
    if not isinstance(results, list):
        raise BadAnswerError("GetMetricData answer has no MetricDataResults list")
    groups = grouped if grouped is not None else {}
    for result in results:
        if not isinstance(result, dict) or (result.get("Id") not in ids and result.get("Id") not in groups):
            raise BadAnswerError(f"GetMetricData returned a result for an unknown query: {result!r:.80}")
        timestamps = result.get("Timestamps") or []
        values = result.get("Values") or []
        if len(timestamps) != len(values):
            raise BadAnswerError(
                f"GetMetricData result {result['Id']}: {len(timestamps)} timestamps, {len(values)} values"
            )
        status = result.get("StatusCode", "Complete")
        if status not in ("Complete", "PartialData"):
            log.warning("GetMetricData result %s has status %s", result["Id"], status)
        for when, value in zip(timestamps, values, strict=True):
            try:
                stamp = when.timestamp() if isinstance(when, datetime) else float(when)
                number = float(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise BadAnswerError(f"GetMetricData result {result['Id']}: unreadable datapoint") from exc
            if not math.isfinite(stamp):
                raise BadAnswerError(f"GetMetricData result {result['Id']}: bad timestamp")
            if result["Id"] in groups:
                target, key = groups[result["Id"]], str(result.get("Label") or "")
            else:
                target, key = newest, result["Id"]
            current = target.get(key)
            if current is None or stamp > current.timestamp:
                target[key] = Datapoint(number, stamp)
