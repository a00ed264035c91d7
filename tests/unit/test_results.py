"""The results step: answers -> records, with the missing-data policy, per-result errors and Insights groups."""

from __future__ import annotations

import math

import pytest

from exporter.model import CloudWatchValue, InsightsValue, MissingData, ResolvedInsights, SeriesKey
from exporter.planner import Batch, ExpressionQuery, Query
from exporter.results import (
    COMPLETE,
    INSIGHTS_GROUP_MEMORY,
    NO_RESULT,
    STALE_INTERVALS,
    UNSPLIT_LABEL,
    Answer,
    Datapoint,
    cloudwatch_records,
)

NOW = 1_800_000_000.0
INTERVAL = 60.0
KEY = SeriesKey.of("AWS/Bedrock/Batch", "NumberOfRecordsPendingProcessing", {"ModelId": "m"})
INSIGHTS = ResolvedInsights(
    "pending", 'SELECT AVG(X) FROM "NS" GROUP BY ModelId', ("ModelId",), 60, 300, 60, MissingData.NAN
)


def batch(missing: MissingData = MissingData.ZERO) -> Batch:
    return Batch(0, 60, (Query("q0", KEY, "Maximum", 60, missing),))


def insights_batch() -> Batch:
    return Batch(0, 60, (), (ExpressionQuery("i0", "pending", INSIGHTS.expression, 60, ("ModelId",)),))


def run(answer: Answer | None, previous: tuple[CloudWatchValue, ...] = (), now: float = NOW, **kw: MissingData):
    answers = {} if answer is None else {"q0": answer}
    return cloudwatch_records([(batch(**kw), answers)], previous, (), (), now, INTERVAL)


def good(value: float, stamp: float = NOW - 120) -> Answer:
    return Answer(newest=Datapoint(value, stamp))


@pytest.mark.parametrize(
    ("policy", "expected"), [(MissingData.ZERO, 0.0), (MissingData.NAN, math.nan), (MissingData.DROP, None)]
)
def test_missing_data_policy_applies_only_to_a_complete_answer(policy: MissingData, expected: float | None) -> None:
    outcome = run(Answer(status=COMPLETE), missing=policy)
    if expected is None:
        assert outcome.values == ()
    else:
        (value,) = outcome.values
        assert value.timestamp is None and not value.stale
        assert value.value == expected or (math.isnan(expected) and math.isnan(value.value))
    assert outcome.errors == ()


@pytest.mark.parametrize("status", ["Forbidden", "InternalError", "PartialData", "SomethingNew"])
@pytest.mark.parametrize("policy", list(MissingData))
def test_an_errored_result_never_becomes_the_missing_data_value(status: str, policy: MissingData) -> None:
    outcome = run(Answer(status=status), missing=policy)
    assert outcome.values == ()  # never had a value: absent, not 0 or NaN
    assert outcome.errors == ((status, 1),)


def test_an_errored_result_keeps_the_last_good_value_for_the_staleness_window_then_drops_it() -> None:
    first = run(good(4200.0))
    (value,) = first.values
    assert value.value == 4200.0 and value.confirmed == NOW and not value.stale
    later = NOW + STALE_INTERVALS * INTERVAL
    kept = run(Answer(status="Forbidden"), first.values, now=later)
    (stale,) = kept.values
    assert stale.value == 4200.0 and stale.stale and stale.confirmed == NOW and stale.timestamp == value.timestamp
    assert kept.newest is None  # a kept value does not make the data look fresh
    gone = run(Answer(status="Forbidden"), kept.values, now=later + 1)
    assert gone.values == () and gone.errors == (("Forbidden", 1),)
    back = run(good(17.0, later), gone.values, now=later + 2)
    assert [v.value for v in back.values] == [17.0] and back.errors == ()


def test_datapoints_count_whatever_the_status() -> None:
    outcome = run(Answer(newest=Datapoint(3.0, NOW - 60), status="PartialData"))
    assert [v.value for v in outcome.values] == [3.0] and outcome.errors == ()
    assert outcome.newest == NOW - 60


def test_no_result_for_a_query_is_an_error_not_missing_data() -> None:
    outcome = run(None)
    assert outcome.values == () and outcome.errors == ((NO_RESULT, 1),)


def test_messages_are_collected() -> None:
    outcome = run(Answer(status="Forbidden", messages=("Forbidden: no access",)))
    assert outcome.messages == ("Forbidden: no access",)


def insights(answer: Answer | None, previous: tuple[InsightsValue, ...] = (), now: float = NOW):
    answers = {} if answer is None else {"i0": answer}
    return cloudwatch_records([(insights_batch(), answers)], (), previous, (INSIGHTS,), now, INTERVAL)


def test_insights_groups_become_records_with_their_group_values() -> None:
    outcome = insights(Answer(groups={"m1": Datapoint(5.0, NOW - 60), "m2": Datapoint(7.0, NOW - 120)}))
    assert sorted((g.group, g.value) for g in outcome.insights) == [
        ((("ModelId", "m1"),), 5.0),
        ((("ModelId", "m2"),), 7.0),
    ]
    assert outcome.newest == NOW - 60


def test_insights_groups_seen_before_show_missing_data_until_forgotten() -> None:
    first = insights(Answer(groups={"m1": Datapoint(5.0, NOW - 60)}))
    quiet = insights(Answer(), first.insights, now=NOW + 600)
    (group,) = quiet.insights
    assert math.isnan(group.value) and group.last_seen == NOW and group.timestamp is None
    forgotten = insights(Answer(), quiet.insights, now=NOW + INSIGHTS_GROUP_MEMORY + 1)
    assert forgotten.insights == ()


def test_an_errored_insights_query_keeps_groups_stale_then_drops_them() -> None:
    first = insights(Answer(groups={"m1": Datapoint(5.0, NOW - 60)}))
    failed = insights(Answer(status="InternalError"), first.insights, now=NOW + 60)
    (group,) = failed.insights
    assert group.value == 5.0 and group.stale and failed.errors == (("InternalError", 1),)
    gone = insights(Answer(status="InternalError"), failed.insights, now=NOW + 4 * INTERVAL)
    assert gone.insights == ()


def test_an_insights_label_that_does_not_split_is_counted_never_attributed() -> None:
    two_keys = ResolvedInsights("q", "SELECT ...", ("A", "B"), 60, 300, 60, MissingData.NAN)
    expr = ExpressionQuery("i0", "q", "SELECT ...", 60, ("A", "B"))
    answer = Answer(groups={"only-one-part": Datapoint(1.0, NOW)})
    outcome = cloudwatch_records([(Batch(0, 60, (), (expr,)), {"i0": answer})], (), (), (two_keys,), NOW, INTERVAL)
    assert outcome.insights == ()
    assert (UNSPLIT_LABEL, 1) in outcome.errors and outcome.unsplit_labels == (("q", "only-one-part"),)
