"""Turn discovered series and metric settings into GetMetricData batches (pure: no I/O)."""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from exporter.model import MissingData, ResolvedInsights, ResolvedMetric, SeriesKey

MAX_QUERIES_PER_CALL = 500
# "If you include a Metrics Insights query, each GetMetricData operation can include only one query. But the same
# GetMetricData operation can also retrieve other metrics." (GetMetricData, CloudWatch API reference)
MAX_INSIGHTS_PER_CALL = 1
# Query ids: the same 500 strings in every batch (q0..q499), not one new string per query (20,000 at 10,000 series)
_QUERY_IDS = tuple(f"q{i}" for i in range(MAX_QUERIES_PER_CALL))


class Query(NamedTuple):  # a NamedTuple like the records (see exporter.model)
    """One MetricDataQuery: a series and a statistic; `id` is unique within its batch."""

    id: str
    series: SeriesKey
    statistic: str
    period: int
    missing_data: MissingData

    def to_api(self) -> dict[str, object]:
        query: dict[str, object] = {
            "Id": self.id,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.series.namespace,
                    "MetricName": self.series.metric,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in self.series.dimensions],
                },
                "Period": self.period,
                "Stat": self.statistic,
            },
            "ReturnData": True,
        }
        if self.series.account:  # a linked source account's series, read through the monitoring account
            query["AccountId"] = self.series.account
        return query


@dataclass(frozen=True, slots=True)
class ExpressionQuery:
    """One Metrics Insights query (an `Expression` with its own Period); `id` is unique within its batch."""

    id: str
    name: str
    expression: str
    period: int
    group_by: tuple[str, ...]

    def to_api(self) -> dict[str, object]:
        return {"Id": self.id, "Expression": self.expression, "Period": self.period, "ReturnData": True}


@dataclass(frozen=True)
class Batch:
    """One GetMetricData call over one time window (epoch seconds): at most 500 queries, at most one Insights."""

    start: int
    end: int
    queries: tuple[Query, ...]
    expressions: tuple[ExpressionQuery, ...] = ()
    # The queries as the API's JSON, encoded once with the batch (reused across cycles: see PlanCache) and kept
    # deflated: 500 queries' JSON is ~120 KB of text (4.7 MB at 10,000 series) and ~3.5 KB deflated; inflating it
    # for a call takes ~0.08 ms. Far less memory than 20,000 nested dicts either way.
    api_deflated: bytes = field(default=b"", compare=False, repr=False)
    # The set of the queries' ids when the planner made them (shared by every batch of that size), else empty
    planned_ids: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @property
    def api_json(self) -> str:
        """The queries as the API's JSON text ("" when the batch was not planned with it)."""
        return zlib.decompress(self.api_deflated).decode() if self.api_deflated else ""

    def to_api(self) -> QueryList:
        """`MetricDataQueries` of the call: only its JSON text when the batch was planned (see QueryList)."""
        if self.api_deflated:
            return QueryList((), self.api_json)
        return QueryList([q.to_api() for q in self.queries] + [e.to_api() for e in self.expressions], "")

    @property
    def query_ids(self) -> frozenset[str]:
        """The ids of `queries` (not of the Insights expressions)."""
        return self.planned_ids or frozenset(q.id for q in self.queries)

    @property
    def size(self) -> int:
        """MetricDataQueries in the call."""
        return len(self.queries) + len(self.expressions)


class QueryList(list[dict[str, object]]):
    """`MetricDataQueries`: either the queries themselves, or (empty) their JSON text alone. The GetMetricData
    serializer (exporter.aws.cloudwatch) splices the text into a JSON body, or `materialize`s it for other
    protocols."""

    def __init__(self, queries: Iterable[dict[str, object]], json_text: str) -> None:
        super().__init__(queries)
        self.json_text = json_text

    def materialize(self) -> list[dict[str, object]]:
        """The queries as dicts."""
        if self or not self.json_text:
            return list(self)
        decoded: list[dict[str, object]] = json.loads(self.json_text)
        return decoded


def window(now: float, period: int, length: int, delay: int) -> tuple[int, int]:
    """[start, end) aligned to the period, shifted back by delay, `length` long (rounded up to periods)."""
    end = int((now - delay) // period) * period
    periods = -(-length // period)
    return end - periods * period, end


@functools.lru_cache(maxsize=MAX_QUERIES_PER_CALL + 1)
def _planned_ids(count: int) -> frozenset[str]:
    return frozenset(_QUERY_IDS[:count])


class RegexError(ValueError):
    """A dimension filter RE2 cannot compile (backreferences, lookarounds, syntax errors, too large)."""


# Prometheus and YACE read regexes with Go's RE2; so does this exporter, through Google's binding. RE2 matches in time
# linear in the input, so no pattern (`^(a+)+$`, say) can stall the poller on a hostile dimension value. Errors are
# raised, not logged by RE2 itself, so a bad pattern costs one line naming the field. The binding (2.4 MB resident with
# its C++ library) is imported on the first filter: most configurations have none (docs/performance.md).


@functools.lru_cache(maxsize=256)
def compile_dimension_filter(pattern: str) -> Any:
    """The compiled RE2 pattern; raises RegexError with RE2's reason when RE2 cannot compile it."""
    import re2  # type: ignore[import-untyped]  # noqa: PLC0415  # on first use: 2.6 MB resident, see above

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "cannot compile"
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise RegexError(f"not a regular expression RE2 accepts: {text}") from None


def select_series(
    discovered: Iterable[SeriesKey],
    metrics: Sequence[ResolvedMetric],
    dimension_filters: Mapping[str, str] | None = None,
) -> list[SeriesKey]:
    """Keep the discovered series of configured metrics whose dimensions pass the filters (sorted, unique).

    A filter matches anywhere in the value (an unanchored search, like Python's `re.search`): anchor it with ^...$
    to match the whole value. Filters use RE2 syntax, as Prometheus and YACE do, and match in linear time.
    """
    wanted = {m.name for m in metrics}
    filters = {name: compile_dimension_filter(pattern) for name, pattern in (dimension_filters or {}).items()}
    selected = set()
    for series in discovered:
        if series.metric not in wanted:
            continue
        dims = dict(series.dimensions)
        if all(name in dims and rx.search(dims[name]) for name, rx in filters.items()):
            selected.add(series)
    return sorted(selected)


def plan(
    series: Iterable[SeriesKey],
    metrics: Sequence[ResolvedMetric],
    now: float,
    max_queries_per_call: int = MAX_QUERIES_PER_CALL,
    insights: Sequence[ResolvedInsights] = (),
) -> list[Batch]:
    """Every series x statistic and every Insights query, grouped by time window, in as few calls as the limits allow.

    Per call: at most max_queries_per_call queries, of which at most one is an Insights query. A window with S
    statistic queries and I Insights queries takes max(I, ceil((S + I) / max_queries_per_call)) calls: the fewest.
    """
    if not 1 <= max_queries_per_call <= MAX_QUERIES_PER_CALL:
        raise ValueError(f"max_queries_per_call must be 1..{MAX_QUERIES_PER_CALL}")
    by_name = {m.name: m for m in metrics}
    groups: dict[tuple[int, int], list[tuple[SeriesKey, str, ResolvedMetric]]] = {}
    for key in sorted(set(series)):
        metric = by_name.get(key.metric)
        if metric is None:
            continue
        win = window(now, metric.period, metric.length, metric.delay)
        groups.setdefault(win, []).extend((key, stat, metric) for stat in metric.statistics)
    expressions: dict[tuple[int, int], list[ResolvedInsights]] = {}
    for item in insights:
        expressions.setdefault(window(now, item.period, item.length, item.delay), []).append(item)
    batches = []
    for start, end in sorted(groups.keys() | expressions.keys()):
        items = groups.get((start, end), [])
        exprs = expressions.get((start, end), [])
        calls = max(-(-len(exprs) // MAX_INSIGHTS_PER_CALL), -(-(len(items) + len(exprs)) // max_queries_per_call))
        offset = 0
        for call in range(calls):
            expr = exprs[call * MAX_INSIGHTS_PER_CALL : (call + 1) * MAX_INSIGHTS_PER_CALL]
            chunk = items[offset : offset + max_queries_per_call - len(expr)]
            offset += len(chunk)
            queries = tuple(
                Query(_QUERY_IDS[i], key, stat, metric.period, metric.missing_data)
                for i, (key, stat, metric) in enumerate(chunk)
            )
            insights_queries = tuple(
                ExpressionQuery(f"i{i}", e.name, e.expression, e.period, e.group_by) for i, e in enumerate(expr)
            )
            api = [q.to_api() for q in queries] + [e.to_api() for e in insights_queries]
            deflated = zlib.compress(json.dumps(api).encode(), 1)
            batches.append(Batch(start, end, queries, insights_queries, deflated, _planned_ids(len(queries))))
    return batches


class PlanCache:
    """`plan` for one task, its batches reused while the series list (the same list object) and the windows' layout
    relative to each other stay the same: then only the windows move, by one shift for all of them."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._series: Sequence[SeriesKey] | None = None
        self._batches: list[Batch] = []
        self._origin = 0

    def plan(
        self,
        series: Sequence[SeriesKey],
        metrics: Sequence[ResolvedMetric],
        now: float,
        max_queries_per_call: int = MAX_QUERIES_PER_CALL,
        insights: Sequence[ResolvedInsights] = (),
    ) -> list[Batch]:
        windows = [window(now, m.period, m.length, m.delay) for m in metrics]
        windows += [window(now, i.period, i.length, i.delay) for i in insights]
        origin = windows[0][0] if windows else 0
        layout = tuple((start - origin, end - origin) for start, end in windows)
        key = (len(series), layout, max_queries_per_call, tuple(metrics), tuple(insights))
        if key == self._key and series is self._series:
            shift = origin - self._origin
            return [replace(b, start=b.start + shift, end=b.end + shift) for b in self._batches]
        batches = plan(series, metrics, now, max_queries_per_call, insights)
        self._key, self._series, self._batches, self._origin = key, series, batches, origin
        return batches
