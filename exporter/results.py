"""AWS answers -> typed records (pure: no I/O, no clock; `now` is passed in).

The one home of the rules that decide what a number on a sink means:
- Only values AWS sent. A datapoint counts whatever its result's status (a `PartialData` result carries real values).
- The missing-data policy applies only to a result CloudWatch answered `Complete` with no datapoint.
- A result with no datapoint whose status is not `Complete` (`Forbidden`, `InternalError`, a status we do not know)
  is an error for that series: it keeps its last good value, marked stale, for `STALE_INTERVALS` intervals, then
  disappears; a series that never had a value stays absent. Errors never become numbers.
- Metrics Insights groups seen with data are remembered for `INSIGHTS_GROUP_MEMORY` seconds (as ListMetrics'
  RecentlyActive=PT3H keeps a discovered series) and show the missing-data value meanwhile.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from exporter.errors import BadAnswerError
from exporter.insights import group_values
from exporter.model import CloudWatchValue, InsightsValue, MissingData, ResolvedInsights, SeriesKey
from exporter.planner import Batch

COMPLETE = "Complete"
# A value whose series errored keeps being served this many intervals after AWS last confirmed it, then goes away:
# long enough to ride out a transient fault, short enough that a lasting one shows as absent data, not a frozen line.
STALE_INTERVALS = 3
INSIGHTS_GROUP_MEMORY = 3 * 3600.0
MAX_MESSAGES = 10  # per cycle, for the log and the status page
NO_RESULT = "NoResult"  # CloudWatch answered without a result for the query: treated as an error
UNSPLIT_LABEL = "UnsplittableLabel"  # counted like a status code: an Insights label we cannot attribute to a group
_FLOAT_INT = 10**300  # integers within this convert to float without OverflowError
# A datapoint's timestamp is the start of its period, inside the requested [StartTime, EndTime) (GetMetricData API
# reference); the planner aligns windows to the period already. One hour either side (the coarsest period alignment
# CloudWatch applies, to windows over 63 days old) is tolerated; anything further out (1970, negative, 1e15,
# now + 10 days) is not a value: dropped and counted as a bad answer.
WINDOW_SLACK = 3600.0


class Datapoint(NamedTuple):  # made 20,000 times a cycle: a tuple is quicker to make than a frozen dataclass
    value: float
    timestamp: float


@dataclass(slots=True)
class Answer:
    """Everything the pages of one GetMetricData call said about one query id."""

    newest: Datapoint | None = None
    status: str = COMPLETE  # the status of the last page that carried this id
    messages: tuple[str, ...] = ()
    groups: dict[str, Datapoint] | None = None  # Insights: newest datapoint per result Label (made when one comes)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)[:200]


def merge_page(
    answers: dict[str, Answer],
    results: Any,
    ids: Set[str],
    insight_ids: Set[str],
    window: tuple[float, float] | None = None,
) -> int:
    """Fold one page's `MetricDataResults` into `answers`; raises BadAnswerError on an unusable answer. Datapoints
    outside `window` (requested start, end) plus WINDOW_SLACK are dropped; returns how many."""
    low, high = (window[0] - WINDOW_SLACK, window[1] + WINDOW_SLACK) if window is not None else (-math.inf, math.inf)
    dropped = 0
    if not isinstance(results, list):
        raise BadAnswerError("GetMetricData answer has no MetricDataResults list")
    for result in results:
        if not isinstance(result, dict):
            raise BadAnswerError("GetMetricData returned a result that is not an object")
        qid = result.get("Id")
        if not isinstance(qid, str) or (qid not in ids and qid not in insight_ids):
            raise BadAnswerError(f"GetMetricData returned a result for an unknown query: {_text(qid)[:80]}")
        timestamps = result.get("Timestamps") or []
        values = result.get("Values") or []
        if not isinstance(timestamps, list) or not isinstance(values, list) or len(timestamps) != len(values):
            raise BadAnswerError(f"GetMetricData result {qid}: timestamps and values do not pair up")
        answer = answers.get(qid)
        if answer is None:
            answer = answers[qid] = Answer()
        status = result.get("StatusCode", COMPLETE)
        answer.status = status if type(status) is str else _text(status)
        said = result.get("Messages")
        if said:
            for message in said if isinstance(said, list) else ():
                if isinstance(message, dict) and len(answer.messages) < MAX_MESSAGES:
                    text = f"{_text(message.get('Code', ''))}: {_text(message.get('Value', ''))}"
                    answer.messages = (*answer.messages, text)
        if not timestamps:
            continue
        groups = None
        if qid in insight_ids:
            label = result.get("Label")
            key = label if isinstance(label, str) else ""
            groups = answer.groups = answer.groups if answer.groups is not None else {}
        newest = answer.newest if groups is None else groups.get(key)
        for when, value in zip(timestamps, values, strict=True):
            point = _datapoint(qid, when, value)
            if not low <= point.timestamp <= high:
                dropped += 1
            elif newest is None or point.timestamp > newest.timestamp:
                newest = point
        if groups is None:
            answer.newest = newest
        elif newest is not None:
            groups[key] = newest
    return dropped


def _datapoint(qid: str, when: Any, value: Any) -> Datapoint:
    kind = type(when)
    # orjson's numbers (most datapoints) first, without the general checks: an int past a float's range is not one
    if type(value) is float and (kind is float or (kind is int and -_FLOAT_INT < when < _FLOAT_INT)):
        stamp, number = float(when), value
    else:
        try:
            stamp = when.timestamp() if isinstance(when, datetime) else float(when)
            if isinstance(value, bool) or not isinstance(value, int | float):  # a Double in the API's model
                raise TypeError("not a number")
            number = float(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadAnswerError(f"GetMetricData result {qid}: unreadable datapoint") from exc
    if not math.isfinite(stamp):
        raise BadAnswerError(f"GetMetricData result {qid}: bad timestamp")
    return Datapoint(number, stamp)


@dataclass(frozen=True)
class Outcome:
    """The records of one namespace cycle, and what went wrong per result."""

    values: tuple[CloudWatchValue, ...]
    insights: tuple[InsightsValue, ...]
    newest: float | None
    errors: tuple[tuple[str, int], ...]  # status code -> results that were errors
    messages: tuple[str, ...]
    unsplit_labels: tuple[tuple[str, str], ...] = ()  # (query name, label) that could not be split into groups


def cloudwatch_records(
    results: Sequence[tuple[Batch, Mapping[str, Answer]]],
    previous_values: Iterable[CloudWatchValue],
    previous_insights: Iterable[InsightsValue],
    insights: Sequence[ResolvedInsights],
    now: float,
    interval: float,
) -> Outcome:
    """Records for one cycle from its answers and the previous cycle's records."""
    stale_after = STALE_INTERVALS * interval
    before = _Previous(previous_values)
    fills = {id(policy): policy.fill() for policy in MissingData}  # by identity: enum hashing is slow at 20,000
    errors: Counter[str] = Counter()
    messages: list[str] = []
    values: list[CloudWatchValue] = []
    newest: float | None = None
    for batch, answers in results:
        for said in answers.values():
            messages.extend(said.messages[: max(0, MAX_MESSAGES - len(messages))])
        for query in batch.queries:
            answer = answers.get(query.id)
            point = answer.newest if answer is not None else None
            if point is not None:  # a datapoint (most results): the value AWS sent, now confirmed
                values.append(CloudWatchValue(query.series, query.statistic, point.value, point.timestamp, now))
                if newest is None or point.timestamp > newest:
                    newest = point.timestamp
                continue
            if answer is not None and answer.status == COMPLETE:  # no datapoint in the window: the missing-data value
                fill = fills[id(query.missing_data)]
                if fill is not None:
                    values.append(CloudWatchValue(query.series, query.statistic, fill, None, now))
                continue
            # An error (or no result at all for the query): the last good value ages, then goes; never a made-up one.
            errors[answer.status if answer is not None else NO_RESULT] += 1
            last = before.get((query.series, query.statistic))
            if last is not None and now - last.confirmed <= stale_after:
                values.append(
                    CloudWatchValue(query.series, query.statistic, last.value, last.timestamp, last.confirmed, True)
                )
    groups, unsplit, group_errors, group_newest = _insights_records(
        results, previous_insights, insights, now, stale_after
    )
    errors.update(group_errors)
    if group_newest is not None:
        newest = group_newest if newest is None else max(newest, group_newest)
    return Outcome(
        values=tuple(values),
        insights=tuple(groups),
        newest=newest,
        errors=tuple(sorted(errors.items())),
        messages=tuple(messages),
        unsplit_labels=tuple(unsplit),
    )


class _Previous:
    """The previous cycle's values by (series, statistic), indexed only when a result errs (most cycles have none:
    indexing 20,000 values was a tenth of a cycle's CPU)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Iterable[CloudWatchValue]) -> None:
        self._values = values
        self._index: dict[tuple[SeriesKey, str], CloudWatchValue] | None = None

    def get(self, key: tuple[SeriesKey, str]) -> CloudWatchValue | None:
        if self._index is None:
            self._index = {(v.series, v.statistic): v for v in self._values}
        return self._index.get(key)


def _insights_records(
    results: Sequence[tuple[Batch, Mapping[str, Answer]]],
    previous: Iterable[InsightsValue],
    insights: Sequence[ResolvedInsights],
    now: float,
    stale_after: float,
) -> tuple[list[InsightsValue], list[tuple[str, str]], Counter[str], float | None]:
    by_name = {i.name: i for i in insights}
    before: dict[tuple[str, tuple[tuple[str, str], ...]], InsightsValue] = {(v.query, v.group): v for v in previous}
    out: list[InsightsValue] = []
    unsplit: list[tuple[str, str]] = []
    errors: Counter[str] = Counter()
    newest: float | None = None
    for batch, answers in results:
        for expression in batch.expressions:
            config = by_name.get(expression.name)
            if config is None:
                continue
            answer = answers.get(expression.id)
            found: dict[tuple[tuple[str, str], ...], Datapoint] = {}
            for label, point in sorted(((answer.groups if answer else None) or {}).items()):
                values = group_values(label, expression.group_by)
                if values is None:
                    unsplit.append((expression.name, label))
                    errors[UNSPLIT_LABEL] += 1
                    continue
                group = tuple(zip(expression.group_by, values, strict=True))
                if group in found:  # two labels naming one group: keep the first, count the other
                    errors[UNSPLIT_LABEL] += 1
                    continue
                found[group] = point
            ok = answer is not None and answer.status == COMPLETE
            if answer is None or (not ok and not found):
                errors[answer.status if answer is not None else NO_RESULT] += 1
            for group, point in found.items():
                out.append(
                    InsightsValue(expression.name, expression.expression, group, point.value, point.timestamp, now, now)
                )
                newest = point.timestamp if newest is None else max(newest, point.timestamp)
            for (name, group), last in sorted(before.items()):
                if name != expression.name or group in found or now - last.last_seen > INSIGHTS_GROUP_MEMORY:
                    continue
                if ok:
                    fill = config.missing_data.fill()
                    if fill is not None:
                        out.append(InsightsValue(name, last.expression, group, fill, None, last.last_seen, now))
                elif now - last.confirmed <= stale_after:
                    out.append(last._replace(stale=True))  # the same query, expression and group: only `stale` moves
    return out, unsplit, errors, newest
