"""Cost per tag: which tag values become labels, and what happens to values that are user data at its worst."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from exporter.model import Job
from exporter.naming import tag_label as label_name
from exporter.tags import MAX_VALUES, READS_PER_CYCLE, TagReader


def job(arn: str, status: str = "Completed", ended: float = 100.0) -> Job:
    return Job(arn, "j", "m", status, "InvokeModel", 0.0, ended, None, None, None, None, None)


class Tags:
    """Parsed ListTagsForResource answers by ARN (what botocore would return), and the ARNs asked, in order.
    The real client over HTTP is in tests/integration/test_job_tags.py."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, arn: str) -> Any:
        self.calls.append(arn)
        answer = self.answers[arn]
        if isinstance(answer, Exception):
            raise answer
        return answer


def tags(**pairs: str) -> dict[str, Any]:
    return {"tags": [{"key": k, "value": v} for k, v in pairs.items()]}


def test_label_names_are_prometheus_safe() -> None:
    assert label_name("team") == "tag_team"
    assert label_name("cost-center:eu/1") == "tag_cost_center_eu_1"


def test_allow_listed_tags_are_read_once_per_finished_job() -> None:
    client = Tags({"a": tags(team="search", secret="x"), "b": {"tags": []}})
    dropped: list[str] = []
    reader = TagReader(["team", "project"], dropped.append)
    jobs = [job("a"), job("b"), job("c", status="InProgress")]  # a running job has no cost yet: not read
    got = reader.update(jobs, 0.0, client)
    assert got == {"a": (("team", "search"), ("project", "")), "b": (("team", ""), ("project", ""))}
    assert reader.update(jobs, 60.0, client) == got and client.calls == ["a", "b"] and dropped == []
    assert reader.update([job("b")], 120.0, client) == {"b": (("team", ""), ("project", ""))}  # a forgotten


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("x" * 129, "too_long"),
        ("<script>alert(1)</script>", "invalid"),
        ('team"} 1\nevil_metric{a="', "invalid"),
        ("tab\there", "invalid"),
        ("caf\u00e9", "invalid"),  # outside TagValue's ASCII pattern
        ("line\u2028separator", "invalid"),
    ],
)
def test_a_value_aws_would_refuse_or_too_long_is_dropped_and_counted(value: str, reason: str) -> None:
    dropped: list[str] = []
    reader = TagReader(["team"], dropped.append)
    got = reader.update([job("a")], 0.0, Tags({"a": tags(team=value)}))
    assert got == {"a": (("team", ""),)} and dropped == [reason]


def test_white_space_around_a_value_is_stripped() -> None:
    got = TagReader(["team"], lambda _: None).update([job("a")], 0.0, Tags({"a": tags(team="  data science ")}))
    assert got == {"a": (("team", "data science"),)}


def test_distinct_values_per_key_are_bounded() -> None:
    dropped: list[str] = []
    reader = TagReader(["team"], dropped.append)
    n = MAX_VALUES + 5
    answers = {f"j{i:04d}": tags(team=f"t{i}") for i in range(n)}
    jobs = [job(arn, ended=float(i)) for i, arn in enumerate(sorted(answers))]
    got: dict[str, Any] = {}
    for cycle in range(n // READS_PER_CYCLE + 1):
        got = reader.update(jobs, float(cycle), Tags(answers))
    values = {dict(v)["team"] for v in got.values()}
    assert len(values - {""}) == MAX_VALUES and dropped == ["cardinality"] * 5
    # the values are those of retained jobs: once the first jobs leave, new values have room again
    later = {f"k{i}": tags(team=f"new{i}") for i in range(3)}
    kept = jobs[10:] + [job(arn, ended=1000.0) for arn in later]
    got = reader.update(kept, 99.0, Tags({**answers, **later}))
    assert {dict(got[arn])["team"] for arn in later} == {"new0", "new1", "new2"} and len(dropped) == 5


def test_reads_are_spread_over_cycles_oldest_first() -> None:
    answers = {f"j{i:03d}": tags(team="a") for i in range(READS_PER_CYCLE + 3)}
    client = Tags(answers)
    reader = TagReader(["team"], lambda _: None)
    jobs = [job(arn, ended=float(-i)) for i, arn in enumerate(sorted(answers))]  # the last ended first
    reader.update(jobs, 0.0, client)
    assert len(client.calls) == READS_PER_CYCLE and client.calls[0] == sorted(answers)[-1]
    reader.update(jobs, 1.0, client)
    assert len(client.calls) == len(answers)


def test_a_failed_read_is_retried_with_backoff_and_a_bad_answer_too() -> None:
    from botocore.exceptions import ClientError

    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListTagsForResource")
    client = Tags({"a": denied, "b": {"tags": "nope"}, "c": {"tags": [{"key": "team"}, "junk", {"value": "x"}]}})
    bad: list[int] = []
    reader = TagReader(["team"], lambda _: None, lambda: bad.append(1))
    jobs = [job("a"), job("b"), job("c")]
    assert reader.update(jobs, 0.0, client) == dict.fromkeys("abc", (("team", ""),))
    assert client.calls == ["a", "b", "c"] and len(bad) == 1  # b is a bad answer; c answered, no usable tag
    reader.update(jobs, 59.0, client)
    assert client.calls == ["a", "b", "c"]  # not due before a minute
    reader.update(jobs, 60.0, client)
    reader.update(jobs, 150.0, client)  # the second retry waits two minutes
    assert client.calls == ["a", "b", "c", "a", "b"]
    client.answers["a"] = tags(team="ok")
    assert reader.update(jobs, 180.0, client)["a"] == (("team", "ok"),)


def test_a_job_that_is_gone_counts_as_untagged_and_is_not_read_again() -> None:
    from botocore.exceptions import ClientError

    gone = ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "ListTagsForResource")
    client = Tags({"a": gone})
    reader = TagReader(["team"], lambda _: None)
    for now in (0.0, 4000.0):
        assert reader.update([job("a")], now, client) == {"a": (("team", ""),)}
    assert client.calls == ["a"]


@given(st.text(max_size=300))
@example('"} 1\nfake{a="')
@example(" " * 300)
def test_any_tag_value_becomes_a_safe_label_or_nothing(value: str) -> None:
    dropped: list[str] = []
    got = TagReader(["team"], dropped.append).update([job("a")], 0.0, Tags({"a": tags(team=value)}))["a"]
    (exported,) = [v for k, v in got if k == "team"]
    assert len(exported) <= 128 and all(c.isascii() and (c.isalnum() or c in " ._:/=+@-") for c in exported)
    assert exported == value.strip() or (exported == "" and (len(dropped) == 1 or not value.strip()))
