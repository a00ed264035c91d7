"""Turn discovered series and metric settings into GetMetricData batches (pure: no I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter.config import MissingData, ResolvedMetric

MAX_QUERIES_PER_CALL = 500


@dataclass(frozen=True, order=True, slots=True)
class SeriesKey:
    """One CloudWatch metric with one dimension set (dimensions sorted by name)."""

    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, namespace: str, metric: str, dimensions: Mapping[str, str]) -> SeriesKey:
        return cls(namespace, metric, tuple(sorted(dimensions.items())))


@dataclass(frozen=True, slots=True)
class Query:
    """One MetricDataQuery: a series and a statistic; `id` is unique within its batch."""

    id: str
    series: SeriesKey
    statistic: str
    period: int
    missing_data: MissingData

    def to_api(self) -> dict[str, object]:
        return {
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


@dataclass(frozen=True)
class Batch:
    """One GetMetricData call: at most 500 queries sharing a time window (epoch seconds)."""

    start: int
    end: int
    queries: tuple[Query, ...]


def window(now: float, period: int, length: int, delay: int) -> tuple[int, int]:
    """[start, end) aligned to the period, shifted back by delay, `length` long (rounded up to periods)."""
    end = int((now - delay) // period) * period
    periods = -(-length // period)
    return end - periods * period, end


def select_series(
    discovered: Iterable[SeriesKey],
    metrics: Sequence[ResolvedMetric],
    dimension_filters: Mapping[str, str] | None = None,
) -> list[SeriesKey]:
    """Keep the discovered series of configured metrics whose dimensions pass the filters (sorted, unique)."""
    wanted = {m.name for m in metrics}
    filters = {name: re.compile(pattern) for name, pattern in (dimension_filters or {}).items()}
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
) -> list[Batch]:
    """Every series x statistic as a query, grouped by time window, in batches of at most max_queries_per_call."""
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
    batches = []
    for (start, end), items in sorted(groups.items()):
        for offset in range(0, len(items), max_queries_per_call):
            chunk = items[offset : offset + max_queries_per_call]
            queries = tuple(
                Query(f"q{i}", key, stat, metric.period, metric.missing_data)
                for i, (key, stat, metric) in enumerate(chunk)
            )
            batches.append(Batch(start, end, queries))
    return batches
