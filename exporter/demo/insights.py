"""The simulated AWS's Metrics Insights: evaluates the supported subset over moto's stored datapoints.

moto answers GetMetricData for MetricStat queries but does not evaluate Metrics Insights. A GetMetricData request
(awsJson1_0: POST / with X-Amz-Target ...GetMetricData) that carries a `SELECT ...` expression is split: the
MetricStat queries go to moto, the Insights query is evaluated here, and the answers are merged. Like CloudWatch it
refuses more than one Insights query or more than 500 queries per call.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from exporter.insights import MAX_SERIES_PER_QUERY, OTHER, InsightsQuery, InsightsSyntaxError, group_label, parse
from exporter.planner import MAX_INSIGHTS_PER_CALL, MAX_QUERIES_PER_CALL

StartResponse = Callable[..., Any]
JSON_TYPE = "application/x-amz-json-1.0"
MAX_BODY = 8 << 20


def _aggregate(function: str, values: Sequence[float]) -> float:
    if function == "AVG":
        return sum(values) / len(values)
    if function == "SUM":
        return sum(values)
    if function == "MIN":
        return min(values)
    if function == "MAX":
        return max(values)
    return float(len(values))  # COUNT


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _stamp(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def evaluate(
    query: InsightsQuery,
    data: Iterable[Any],
    start: float,
    end: float,
    period: int,
    query_id: str,
    label: str | None = None,
    newest_first: bool = True,
) -> list[dict[str, Any]]:
    """MetricDataResults of one query over moto MetricDatum-like objects (namespace, name, dimensions, timestamp,
    value): observations in [start, end) bucketed by period from start, one series per group."""
    where = dict(query.where)
    schema = None if query.schema is None else set(query.schema)
    groups: dict[tuple[str, ...], dict[int, list[float]]] = {}
    for datum in data:
        value = getattr(datum, "value", None)  # statistic sets (no single value) are not observations here
        if value is None or datum.namespace != query.namespace or datum.name != query.metric:
            continue
        dims = {d.name: d.value for d in datum.dimensions}
        if schema is not None and set(dims) != schema:
            continue
        if any(dims.get(k) != v for k, v in where.items()):
            continue
        when = _stamp(datum.timestamp)
        if not start <= when < end:
            continue
        group = tuple(dims.get(k, OTHER) for k in query.group_by)
        bucket = int(start + (when - start) // period * period)
        groups.setdefault(group, {}).setdefault(bucket, []).append(float(value))
    ordered = sorted(groups)
    if query.order_by is not None:
        function, direction = query.order_by
        ordered.sort(
            key=lambda g: _aggregate(function, [v for vs in groups[g].values() for v in vs]),
            reverse=direction == "DESC",
        )
    ordered = ordered[: min(query.limit or MAX_SERIES_PER_QUERY, MAX_SERIES_PER_QUERY)]
    if not ordered:
        return [{"Id": query_id, "Label": label or query_id, "Timestamps": [], "Values": [], "StatusCode": "Complete"}]
    results = []
    for group in ordered:
        buckets = sorted(groups[group].items(), reverse=newest_first)
        results.append(
            {
                "Id": query_id,
                "Label": group_label(group) if query.group_by else (label or query_id),
                "Timestamps": [float(b) for b, _ in buckets],
                "Values": [_aggregate(query.function, vs) for _, vs in buckets],
                "StatusCode": "Complete",
            }
        )
    return results


def _error(start_response: StartResponse, code: str, message: str) -> list[bytes]:
    body = json.dumps({"__type": code, "message": message}).encode()
    start_response(
        "400 Bad Request",
        [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body))), ("x-amzn-query-error", f"{code};Sender")],
    )
    return [body]


def answer(
    environ: dict[str, Any],
    start_response: StartResponse,
    moto: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
    data: Callable[[], Iterable[Any]],
) -> Iterable[bytes] | None:
    """Answer a GetMetricData request that holds an Insights query; None (body left readable) for any other."""
    if not environ.get("HTTP_X_AMZ_TARGET", "").endswith(".GetMetricData"):
        return None
    length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
    raw = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        request = json.loads(raw or b"{}")
        queries = list(request.get("MetricDataQueries") or [])
    except (ValueError, AttributeError):
        return None
    insights = [q for q in queries if str(q.get("Expression", "")).lstrip()[:6].upper() == "SELECT"]
    if not insights:
        return None
    if len(queries) > MAX_QUERIES_PER_CALL:
        return _error(start_response, "ValidationError", f"at most {MAX_QUERIES_PER_CALL} queries per call")
    if len(insights) > MAX_INSIGHTS_PER_CALL:
        return _error(
            start_response,
            "ValidationError",
            "a GetMetricData call can include only one Metrics Insights query",
        )
    try:
        parsed = [(q, parse(str(q["Expression"]))) for q in insights]
    except InsightsSyntaxError as exc:
        return _error(start_response, "ValidationError", f"the test AWS does not evaluate this query: {exc}")
    start, end = _epoch(request["StartTime"]), _epoch(request["EndTime"])
    newest_first = request.get("ScanBy", "TimestampDescending") == "TimestampDescending"
    results: list[dict[str, Any]] = []
    others = [q for q in queries if q not in insights]
    messages: list[Any] = []
    if others:
        body = json.dumps({**request, "MetricDataQueries": others}).encode()
        forwarded = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda _chunk: None

        chunks = b"".join(moto(forwarded, capture))
        if not str(captured.get("status", "")).startswith("200"):
            start_response(captured["status"], captured["headers"])
            return [chunks]
        moto_answer = json.loads(chunks or b"{}")
        results.extend(moto_answer.get("MetricDataResults") or [])
        messages.extend(moto_answer.get("Messages") or [])
    snapshot = list(data())
    for item, query in parsed:
        period = int(item.get("Period") or 60)
        if period <= 0 or not math.isfinite(period):
            return _error(start_response, "ValidationError", "Period must be positive")
        results.extend(evaluate(query, snapshot, start, end, period, str(item["Id"]), item.get("Label"), newest_first))
    body = json.dumps({"MetricDataResults": results, "Messages": messages}).encode()
    start_response("200 OK", [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body)))])
    return [body]
