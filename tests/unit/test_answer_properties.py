"""Property tests of the AWS answer parsers with answers generated from botocore's output shapes (tests/strategies).

Properties: a parser never raises anything but the exporter's BadAnswerError; never yields a value that is not one
of the datapoints AWS sent; keeps what it cannot classify (unknown job statuses) rather than dropping it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exporter import results as _results
from exporter.aws import bedrock as _bedrock
from exporter.aws import cloudwatch as _cloudwatch
from exporter.errors import BadAnswerError
from tests.strategies import UNKNOWN_ENUM_VALUES, answers, status_codes, timestamps

# --- The parsers under test: when one moves or is renamed, change the adapter line here. ----------------------------

parse_job = _bedrock.parse_job
parse_list_metrics_page = _cloudwatch.parse_list_metrics_page
merge_page = _results.merge_page


def merge_pages(pages: Sequence[Any], ids: set[str]) -> dict[str, tuple[float, float]]:
    """The newest (value, timestamp) per query id after folding the pages' MetricDataResults in order."""
    answers_by_id: dict[str, Any] = {}
    for page in pages:
        merge_page(answers_by_id, page.get("MetricDataResults"), ids, set())
    return {k: (a.newest.value, a.newest.timestamp) for k, a in answers_by_id.items() if a.newest is not None}


def run_batch(client: Any, batch: Any) -> dict[str, tuple[float, float]]:
    """The newest (value, timestamp) per query id after following the call's pages to the end."""
    answers_by_id = _cloudwatch.run_batch(client, batch)
    return {k: (a.newest.value, a.newest.timestamp) for k, a in answers_by_id.items() if a.newest is not None}


# ---------------------------------------------------------------------------------------------------------------------

IDS = ("q0", "q1")
PAGE = answers(
    "cloudwatch",
    "GetMetricDataOutput",
    {
        "Id": st.one_of(st.sampled_from(IDS), st.sampled_from(IDS), st.text(max_size=3)),  # mostly ours, some not
        "StatusCode": status_codes(),
        "NextToken": st.one_of(st.none(), st.sampled_from(["t1", "t2"])),  # repeated tokens happen
        "Values": st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
    },
)


def sent(pages: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Every (value, timestamp) pair AWS sent per result Id, paired as the API pairs them (same index)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for page in pages:
        for result in page.get("MetricDataResults") or ():
            for when, value in zip(result.get("Timestamps") or (), result.get("Values") or (), strict=False):
                out.setdefault(result.get("Id"), []).append((value, when.timestamp()))
    return out


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@given(st.lists(PAGE, max_size=4))
def test_get_metric_data_pages_give_only_values_aws_sent(pages: list[dict[str, Any]]) -> None:
    try:
        merged = merge_pages(pages, set(IDS))
    except BadAnswerError:
        return
    pairs = sent(pages)
    assert set(merged) <= set(IDS)
    for qid, (value, stamp) in merged.items():
        assert any(same(value, v) and stamp == t for v, t in pairs.get(qid, ())), (qid, value, stamp)


@given(st.lists(PAGE, min_size=1, max_size=6))
def test_get_metric_data_pagination_ends_or_is_a_bad_answer(pages: list[dict[str, Any]]) -> None:
    """run_batch over a client that answers these pages in turn (then a last page): repeated or endless NextTokens
    end in BadAnswerError, never a loop; values are the ones sent."""
    from exporter.model import MissingData, SeriesKey
    from exporter.planner import Batch, Query

    class Pages:  # a stand-in client answering the generated pages, not a mock of boto3's behaviour
        calls = 0

        def get_metric_data(self, **_: Any) -> dict[str, Any]:
            self.calls += 1
            return pages[self.calls - 1] if self.calls <= len(pages) else {"MetricDataResults": []}

    series = SeriesKey.of("AWS/Bedrock/Batch", "NumberOfRecordsPendingProcessing", {"ModelId": "m"})
    queries = tuple(Query(q, series, "Maximum", 60, MissingData.NAN) for q in IDS)
    client = Pages()
    try:
        newest = run_batch(client, Batch(0, 60, queries))
    except BadAnswerError:
        return
    finally:
        assert client.calls <= len(pages) + 1
    pairs = sent(pages)
    for qid, (value, stamp) in newest.items():
        assert any(same(value, v) and stamp == t for v, t in pairs.get(qid, ()))


@given(answers("cloudwatch", "ListMetricsOutput", {"Namespace": st.sampled_from(["NS", "Other", ""])}))
def test_list_metrics_pages_give_only_series_aws_listed(page: dict[str, Any]) -> None:
    try:
        keys = parse_list_metrics_page(page, "NS")
    except BadAnswerError:
        return
    listed = {m.get("MetricName") for m in page.get("Metrics") or ()}
    assert all(k.namespace == "NS" and k.metric in listed for k in keys)


@given(
    answers(
        "bedrock",
        "ModelInvocationJobSummary",
        {
            "status": st.one_of(
                st.sampled_from(["InProgress"]), UNKNOWN_ENUM_VALUES, answers("bedrock", "ModelInvocationJobStatus")
            )
        },
    )
)
def test_job_summaries_parse_or_are_skipped_never_raise(summary: dict[str, Any]) -> None:
    job = parse_job(summary)
    if job is not None:
        assert job.status == summary.get("status", job.status)
        assert job.submit_time == summary["submitTime"].timestamp()
        for field, member in (("total_records", "totalRecordCount"), ("failed_records", "errorRecordCount")):
            value = getattr(job, field)
            assert value is None or value == summary.get(member)


VALID_SUMMARY = st.fixed_dictionaries(
    {
        "jobArn": st.just("arn:aws:bedrock:us-east-1:000000000000:model-invocation-job/abcdefghijkl"),
        "jobName": st.just("job"),
        "modelId": st.just("anthropic.claude-3-haiku-20240307-v1:0"),
        "roleArn": st.just("arn:aws:iam::000000000000:role/batch"),
        "submitTime": st.datetimes(
            min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        ),
        "inputDataConfig": st.just({"s3InputDataConfig": {"s3Uri": "s3://in/"}}),
        "outputDataConfig": st.just({"s3OutputDataConfig": {"s3Uri": "s3://out/"}}),
        "status": UNKNOWN_ENUM_VALUES.filter(lambda s: s not in ("",)),
    },
    optional={"endTime": timestamps(), "lastModifiedTime": timestamps()},
)


@given(VALID_SUMMARY)
def test_unknown_job_statuses_are_kept_raw(summary: dict[str, Any]) -> None:
    job = parse_job(summary)
    assert job is not None and job.status == summary["status"]
