"""CloudWatch calls: ListMetrics discovery and GetMetricData execution, with answer checking."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from exporter.aws.errors import BadAnswerError
from exporter.model import SeriesKey
from exporter.planner import Batch
from exporter.results import Answer, merge_page

log = logging.getLogger(__name__)

MAX_PAGES = 1000  # a bound on NextToken chains; CloudWatch never needs nearly this many


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


def run_batch(client: Any, batch: Batch, on_page: Callable[[int], None] | None = None) -> dict[str, Answer]:
    """Run one batch to the last page; what the pages said per query id (exporter.results reads it)."""
    kwargs: dict[str, Any] = {
        "MetricDataQueries": [q.to_api() for q in batch.queries] + [e.to_api() for e in batch.expressions],
        "StartTime": datetime.fromtimestamp(batch.start, UTC),
        "EndTime": datetime.fromtimestamp(batch.end, UTC),
        "ScanBy": "TimestampDescending",
    }
    ids = {q.id for q in batch.queries}
    insight_ids = {e.id for e in batch.expressions}
    answers: dict[str, Answer] = {}
    seen_tokens: set[str] = set()
    for _ in range(MAX_PAGES):
        answer = client.get_metric_data(**kwargs)
        if on_page is not None:
            on_page(batch.size)
        if not isinstance(answer, dict):
            raise BadAnswerError("GetMetricData answer is not an object")
        merge_page(answers, answer.get("MetricDataResults"), ids, insight_ids)
        for message in answer.get("Messages") or ():
            log.info(
                "GetMetricData message: %s", message.get("Value", message) if isinstance(message, dict) else message
            )
        token = answer.get("NextToken")
        if not token:
            return answers
        if not isinstance(token, str) or token in seen_tokens:
            raise BadAnswerError("GetMetricData returned the same NextToken twice")
        seen_tokens.add(token)
        kwargs["NextToken"] = token
    raise BadAnswerError(f"GetMetricData pagination did not end after {MAX_PAGES} pages")
