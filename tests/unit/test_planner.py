from __future__ import annotations

import json
import math
import re

import pytest

from exporter.model import MissingData, ResolvedMetric, SeriesKey
from exporter.planner import MAX_QUERIES_PER_CALL, Batch, plan, select_series, window

NS = "AWS/Bedrock/Batch"
PENDING = ResolvedMetric("NumberOfRecordsPendingProcessing", ("Maximum", "Average"), 60, 300, 60, MissingData.ZERO)
TOKENS = ResolvedMetric("NumberOfInputTokensProcessedPerMinute", ("Sum",), 60, 300, 60, MissingData.ZERO)
NOW = 1_800_000_030.5  # 30.5 s into a minute


def series(n: int, metric: str = PENDING.name) -> list[SeriesKey]:
    return [SeriesKey.of(NS, metric, {"ModelId": f"model-{i:05d}"}) for i in range(n)]


def test_window_is_aligned_and_delayed() -> None:
    start, end = window(NOW, 60, 300, 60)
    assert end % 60 == 0 and start % 60 == 0
    assert end <= NOW - 60 < end + 60
    assert end - start == 300


def test_window_length_rounds_up_to_whole_periods() -> None:
    start, end = window(NOW, 60, 90, 0)
    assert end - start == 120


@pytest.mark.parametrize("n_series", [0, 1, 249, 250, 251, 500, 1000, 1001, 5000])
def test_batches_hold_at_most_500_queries_and_cover_everything_once(n_series: int) -> None:
    batches = plan(series(n_series), [PENDING], NOW)
    queries = n_series * len(PENDING.statistics)
    assert len(batches) == math.ceil(queries / MAX_QUERIES_PER_CALL)
    assert all(1 <= len(b.queries) <= MAX_QUERIES_PER_CALL for b in batches)
    covered = [(q.series, q.statistic) for b in batches for q in b.queries]
    assert len(covered) == len(set(covered)) == queries


def test_query_ids_are_unique_per_batch_and_valid() -> None:
    for batch in plan(series(700), [PENDING], NOW):
        ids = [q.id for q in batch.queries]
        assert len(ids) == len(set(ids))
        assert all(re.fullmatch(r"[a-z][a-zA-Z0-9_]*", i) for i in ids)


def test_metrics_with_different_windows_go_to_different_calls() -> None:
    hourly = ResolvedMetric(TOKENS.name, ("Sum",), 3600, 3600, 0, MissingData.ZERO)
    batches = plan(series(3) + series(3, TOKENS.name), [PENDING, hourly], NOW)
    assert len(batches) == 2
    assert {(b.end - b.start) for b in batches} == {300, 3600}


def test_smaller_batch_size_is_respected() -> None:
    batches = plan(series(10), [PENDING], NOW, max_queries_per_call=3)
    assert [len(b.queries) for b in batches] == [3] * 6 + [2]
    with pytest.raises(ValueError, match="max_queries_per_call"):
        plan(series(1), [PENDING], NOW, max_queries_per_call=501)


def test_query_shape_matches_the_api() -> None:
    (batch,) = plan(series(1, TOKENS.name), [TOKENS], NOW)
    assert batch.queries[0].to_api() == {
        "Id": "q0",
        "MetricStat": {
            "Metric": {
                "Namespace": NS,
                "MetricName": TOKENS.name,
                "Dimensions": [{"Name": "ModelId", "Value": "model-00000"}],
            },
            "Period": 60,
            "Stat": "Sum",
        },
        "ReturnData": True,
    }


def test_select_keeps_configured_metrics_and_filters_dimensions() -> None:
    found = [
        *series(2),
        SeriesKey.of(NS, PENDING.name, {}),
        SeriesKey.of(NS, "SomethingElse", {"ModelId": "model-00000"}),
        SeriesKey.of(NS, PENDING.name, {"ModelId": "anthropic.claude"}),
        *series(1),  # duplicates collapse
    ]
    assert len(select_series(found, [PENDING])) == 4
    picked = select_series(found, [PENDING], {"ModelId": r"^anthropic\."})
    assert picked == [SeriesKey.of(NS, PENDING.name, {"ModelId": "anthropic.claude"})]


def test_planning_is_deterministic() -> None:
    shuffled = list(reversed(series(20)))
    assert plan(shuffled, [PENDING], NOW) == plan(series(20), [PENDING], NOW)


def test_the_plan_cache_reuses_batches_shifting_their_windows_and_replans_on_change() -> None:
    from exporter.planner import PlanCache

    metrics = [ResolvedMetric("M", ("Average", "Maximum"), 60, 300, 60, MissingData.ZERO)]
    series = [SeriesKey.of("NS", "M", {"ModelId": f"m{i}"}) for i in range(300)]
    cache = PlanCache()
    first = cache.plan(series, metrics, 1_000_000.0, 500)
    later = cache.plan(series, metrics, 1_000_000.0 + 120, 500)
    assert later == plan(series, metrics, 1_000_000.0 + 120, 500)  # the same batches a fresh plan gives
    assert later[0].queries is first[0].queries and later[0].start == first[0].start + 120
    assert json.loads(later[0].api_json) == [q.to_api() for q in later[0].queries]
    grown = [*series, SeriesKey.of("NS", "M", {"ModelId": "new"})]
    assert cache.plan(grown, metrics, 1_000_000.0 + 180, 500) == plan(grown, metrics, 1_000_000.0 + 180, 500)
    copy = list(grown)  # an equal list that is another object: planned again, not trusted blindly
    assert cache.plan(copy, metrics, 1_000_000.0 + 240, 500)[0].queries is not later[0].queries


def test_planned_batches_know_their_query_ids_and_share_them_by_size() -> None:
    from exporter.planner import PlanCache

    metrics = [ResolvedMetric("M", ("Average", "Maximum"), 60, 300, 60, MissingData.ZERO)]
    keys = [SeriesKey.of("NS", "M", {"ModelId": f"m{i}"}) for i in range(600)]  # 1,200 queries: 500, 500, 200
    batches = PlanCache().plan(keys, metrics, 1_000_000.0, 500)
    assert [len(b.queries) for b in batches] == [500, 500, 200]
    for b in batches:
        assert b.query_ids == {q.id for q in b.queries}
    assert batches[0].query_ids is batches[1].query_ids  # one set for every batch of 500
    hand_made = Batch(0, 60, batches[2].queries[:3])  # not planned: the ids are found from the queries
    assert hand_made.query_ids == {"q0", "q1", "q2"}


def test_a_linked_accounts_series_is_queried_with_its_account_id() -> None:
    own = SeriesKey.of("AWS/Bedrock/Batch", "M", {"ModelId": "m"})
    linked = SeriesKey.of("AWS/Bedrock/Batch", "M", {"ModelId": "m"}, "111111111111")
    metric = ResolvedMetric("M", ("Maximum",), 60, 300, 0, MissingData.NAN)
    (batch,) = plan([own, linked], [metric], 1_700_000_000)
    api = {q.series.account: q.to_api() for q in batch.queries}
    assert "AccountId" not in api[""]
    assert api["111111111111"]["AccountId"] == "111111111111"
    assert json.loads(batch.api_json) == [q.to_api() for q in batch.queries]
