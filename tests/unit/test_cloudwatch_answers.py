"""The CloudWatch answer parser, fed with answers shaped like botocore's parsed responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.aws.cloudwatch import parse_list_metrics_page, run_batch
from exporter.errors import BadAnswerError
from exporter.model import MissingData, SeriesKey
from exporter.planner import Batch, Query
from exporter.results import Answer, Datapoint, merge_page

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
KEY = SeriesKey.of("NS", "M", {"ModelId": "m"})


def batch(n: int) -> Batch:
    start = int(T0.timestamp())  # the window the datapoints below lie in
    return Batch(start, start + 120, tuple(Query(f"q{i}", KEY, "Average", 60, MissingData.ZERO) for i in range(n)))


def test_newest_datapoint_wins_regardless_of_order() -> None:
    answers: dict[str, Answer] = {}
    merge_page(answers, [{"Id": "q0", "Timestamps": [T0, T1], "Values": [1.0, 2.0]}], {"q0"}, set())
    assert answers["q0"].newest == Datapoint(2.0, T1.timestamp())
    merge_page(answers, [{"Id": "q0", "Timestamps": [T0], "Values": [9.0]}], {"q0"}, set())
    assert answers["q0"].newest is not None and answers["q0"].newest.value == 2.0


def test_the_status_of_the_last_page_wins_and_messages_are_kept() -> None:
    answers: dict[str, Answer] = {}
    merge_page(answers, [{"Id": "q0", "StatusCode": "PartialData", "Timestamps": [T0], "Values": [1.0]}], {"q0"}, set())
    page = [{"Id": "q0", "StatusCode": "Forbidden", "Messages": [{"Code": "Forbidden", "Value": "denied"}]}]
    merge_page(answers, page, {"q0"}, set())
    assert answers["q0"].status == "Forbidden" and answers["q0"].messages == ("Forbidden: denied",)
    assert answers["q0"].newest == Datapoint(1.0, T0.timestamp())  # a datapoint counts whatever the status


@pytest.mark.parametrize(
    "results",
    [
        None,
        [{"Id": "zz", "Timestamps": [], "Values": []}],
        [{"Id": "q0", "Timestamps": [T0], "Values": []}],
        [{"Id": "q0", "Timestamps": ["yesterday"], "Values": [1.0]}],
        [{"Id": "q0", "Timestamps": [T0], "Values": ["NaN-ish"]}],
        [{"Id": []}],  # found by hypothesis once: an unhashable Id
        [{"Id": "q0", "Timestamps": "T0", "Values": "1"}],
        ["not a dict"],
    ],
)
def test_malformed_answers_are_clean_errors(results: Any) -> None:
    with pytest.raises(BadAnswerError):
        merge_page({}, results, {"q0"}, set())


class PagingClient:
    """Answers GetMetricData in pages, the way CloudWatch does for large results (moto never paginates)."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.requests: list[dict[str, Any]] = []

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        return self.pages[len(self.requests) - 1]


def test_next_token_is_followed_to_the_end() -> None:
    client = PagingClient(
        [
            {
                "MetricDataResults": [{"Id": "q0", "Timestamps": [T0], "Values": [1.0], "StatusCode": "PartialData"}],
                "NextToken": "a",
            },
            {"MetricDataResults": [{"Id": "q0", "Timestamps": [T1], "Values": [5.0]}], "NextToken": "b"},
            {"MetricDataResults": [{"Id": "q1", "Timestamps": [T0], "Values": [3.0]}]},
        ]
    )
    pages: list[int] = []
    result = run_batch(client, batch(2), pages.append)
    assert {k: a.newest for k, a in result.items()} == {
        "q0": Datapoint(5.0, T1.timestamp()),
        "q1": Datapoint(3.0, T0.timestamp()),
    }
    assert result["q0"].status == "Complete"  # read from the last page that carried q0
    assert [r.get("NextToken") for r in client.requests] == [None, "a", "b"]
    assert pages == [2, 2, 2]
    assert client.requests[0]["ScanBy"] == "TimestampDescending"
    assert client.requests[0]["StartTime"] == T0


def test_a_repeating_next_token_stops_with_an_error() -> None:
    page = {"MetricDataResults": [], "NextToken": "same"}
    with pytest.raises(BadAnswerError, match="same NextToken"):
        run_batch(PagingClient([page, page, page]), batch(1))


def test_list_metrics_pages_skip_broken_entries() -> None:
    page = {
        "Metrics": [
            {"Namespace": "NS", "MetricName": "M", "Dimensions": [{"Name": "ModelId", "Value": "m"}]},
            {"Namespace": "NS", "Dimensions": []},
            {"Namespace": "Other", "MetricName": "M"},
            {"Namespace": "NS", "MetricName": "M", "Dimensions": [{"Name": "ModelId"}]},
        ]
    }
    assert parse_list_metrics_page(page, "NS") == [KEY]
    with pytest.raises(BadAnswerError):
        parse_list_metrics_page({}, "NS")


LINKED_ENTRY = {"Namespace": "NS", "MetricName": "M", "Dimensions": [{"Name": "ModelId", "Value": "m"}]}


def test_owning_accounts_label_each_series_and_the_own_account_stays_unmarked() -> None:
    page = {"Metrics": [LINKED_ENTRY] * 3, "OwningAccounts": ["123456789012", "111111111111", "222222222222"]}
    found = parse_list_metrics_page(page, "NS", linked=True, own_account="123456789012")
    assert [key.account for key in found] == ["", "111111111111", "222222222222"]
    assert {key._replace(account="") for key in found} == {KEY}
    # Not asked for (not a monitoring target): the member is not read, every series is the task's own
    assert {key.account for key in parse_list_metrics_page(page, "NS")} == {""}
    # Asked for and absent (not a monitoring account: AWS does not say what it answers): all are the own account's
    assert parse_list_metrics_page({"Metrics": [LINKED_ENTRY]}, "NS", linked=True) == [KEY]


@pytest.mark.parametrize(
    "owners",
    [["111111111111"], ["111111111111"] * 3, "111111111111", {"a": 1}, 7],
    ids=["short", "long", "string", "object", "number"],
)
def test_owning_accounts_that_do_not_map_one_to_one_are_a_bad_answer(owners: Any) -> None:
    with pytest.raises(BadAnswerError, match="1:1"):
        parse_list_metrics_page({"Metrics": [LINKED_ENTRY] * 2, "OwningAccounts": owners}, "NS", linked=True)


def test_an_owning_account_that_is_no_account_id_skips_its_metric() -> None:
    owners = ["111111111111", 'x"} 1\n', None, "1" * 13, "111111111111"]
    found = parse_list_metrics_page({"Metrics": [LINKED_ENTRY] * 5, "OwningAccounts": owners}, "NS", linked=True)
    assert [key.account for key in found] == ["111111111111", "111111111111"]
