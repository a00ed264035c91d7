"""Quota headroom: matching quotas to models by name and map, counting jobs, and AWS answers of every bad shape."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.aws.quotas import parse_models, parse_quota, parse_quotas
from exporter.errors import BadAnswerError
from exporter.model import Job, RawQuota
from exporter.quotas import QUOTA_PREFIX, Matched, match, quota_usage

PREFIX = "Sum of in-progress and submitted batch inference jobs using a base model for "
MODELS = {
    "anthropic.claude-3-haiku-20240307-v1:0": "Claude 3 Haiku",
    "meta.llama3-1-70b-instruct-v1:0": "Llama 3.1 70B Instruct",
    "amazon.nova-pro-v1:0": "Nova Pro",
}


def quota(code: str, model_name: str, value: float = 10.0, applied: bool = False, prefix: str = PREFIX) -> RawQuota:
    return RawQuota(code, prefix + model_name, value, applied)


def job(model: str, status: str, arn: str = "") -> Job:
    return Job(
        arn or f"arn:{model}:{status}", "j", model, status, "InvokeModel", 0.0, None, None, None, None, None, None
    )


def test_the_prefix_is_the_quota_name_casefolded() -> None:
    assert PREFIX.casefold() == QUOTA_PREFIX


def test_quotas_match_models_by_display_name_case_and_spacing_aside() -> None:
    quotas = {
        "L-1": quota("L-1", "claude 3  HAIKU"),
        "L-2": quota("L-2", "Llama 3.1 70B Instruct", 2.0, True),
        "L-3": quota("L-3", "Claude Instant"),  # no such model listed: unmatched, never a look-alike
        "L-4": quota("L-4", "Nova Pro", prefix="Records per batch inference job for "),  # not a concurrency quota
    }
    matched = match(quotas, MODELS, {})
    assert dict(matched.quotas) == {
        "anthropic.claude-3-haiku-20240307-v1:0": quotas["L-1"],
        "meta.llama3-1-70b-instruct-v1:0": quotas["L-2"],
    }
    assert matched.unmatched == (PREFIX + "Claude Instant",)
    assert dict(matched.records) == {"amazon.nova-pro-v1:0": quotas["L-4"]}  # the records-per-job quota, apart


def test_the_map_keeps_each_kind_of_quota_apart() -> None:
    records = quota("L-9", "Claude Instant", 50_000.0, prefix="Records per batch inference job for ")
    quotas = {"L-3": quota("L-3", "Claude Instant", 5.0), "L-9": records}
    matched = match(quotas, MODELS, {"L-3": ("anthropic.claude-instant-v1",), "L-9": ("anthropic.claude-instant-v1",)})
    assert dict(matched.quotas) == {"anthropic.claude-instant-v1": quotas["L-3"]}
    assert dict(matched.records) == {"anthropic.claude-instant-v1": records} and matched.unmatched == ()
    unmapped = match(quotas, MODELS, {})
    assert unmapped.unmatched == ("Records per batch inference job for Claude Instant", PREFIX + "Claude Instant")


def test_the_model_map_adds_and_overrides_by_code_or_whole_name() -> None:
    quotas = {"L-1": quota("L-1", "Claude 3 Haiku"), "L-3": quota("L-3", "Claude Instant", 5.0)}
    by_code = match(quotas, MODELS, {"L-3": ("anthropic.claude-instant-v1",)})
    assert dict(by_code.quotas)["anthropic.claude-instant-v1"].code == "L-3" and by_code.unmatched == ()
    by_name = match(quotas, MODELS, {PREFIX + "Claude Instant": ("anthropic.claude-3-haiku-20240307-v1:0",)})
    assert dict(by_name.quotas) == {"anthropic.claude-3-haiku-20240307-v1:0": quotas["L-3"]}  # the map wins


def test_two_models_of_one_name_share_its_quota() -> None:
    models = {"a.model-v1:0": "Same Name", "a.model-v1:0:200k": "Same Name"}
    matched = match({"L-1": quota("L-1", "Same Name")}, models, {})
    assert [m for m, _ in matched.quotas] == ["a.model-v1:0", "a.model-v1:0:200k"]


def test_usage_counts_slots_held_and_jobs_waiting_per_model() -> None:
    haiku, llama = "anthropic.claude-3-haiku-20240307-v1:0", "meta.llama3-1-70b-instruct-v1:0"
    matched = Matched(((haiku, quota("L-1", "Claude 3 Haiku")), (llama, quota("L-2", "x", 2.0, True))))
    jobs = [
        job(llama, "InProgress", "a"),
        job(llama, "Stopping", "b"),
        job(llama, "Scheduled", "c"),
        job(llama, "Scheduled", "d"),
        job(llama, "Validating", "e"),  # has not asked for a slot yet
        job(llama, "Submitted", "f"),
        job(llama, "Completed", "g"),
        job(llama, "Paused", "h"),  # a status the SDK does not list: counts toward neither
        job(f"us.{haiku}", "InProgress", "i"),  # an inference profile runs on its base model's quota
        job(f"arn:aws:bedrock:us-east-1::foundation-model/{haiku}", "Scheduled", "j"),
        job("other.model-v1", "InProgress", "k"),  # no quota known: not exported
    ]
    got = {u.model_id: (u.limit, u.applied, u.in_use, u.waiting) for u in quota_usage(matched, jobs)}
    assert got == {haiku: (10.0, False, 1, 1), llama: (2.0, True, 2, 2)}


def test_models_that_share_a_quota_share_its_slots() -> None:
    shared = quota("L-1", "Same Name", 2.0)
    matched = Matched((("a", shared), ("b", shared), ("c", quota("L-2", "Other", 2.0))))
    jobs = [job("a", "InProgress", "1"), job("b", "InProgress", "2"), job("a", "Scheduled", "3")]
    got = {u.model_id: (u.in_use, u.waiting) for u in quota_usage(matched, jobs)}
    assert got == {"a": (2, 1), "b": (2, 1), "c": (0, 0)}  # the quota is full with a job waiting, seen from both


def test_a_model_without_jobs_still_shows_its_limit_with_zero_use() -> None:
    matched = Matched((("m", quota("L-1", "M")),))
    (only,) = quota_usage(matched, [])
    assert (only.model_id, only.limit, only.in_use, only.waiting) == ("m", 10.0, 0, 0)


def entry(**members: Any) -> dict[str, Any]:
    return {"QuotaCode": "L-1", "QuotaName": PREFIX + "M", "Value": 10.0, **members}


@pytest.mark.parametrize(
    "bad",
    [
        entry(Value=math.nan),
        entry(Value=math.inf),
        entry(Value=-math.inf),
        entry(Value=-1.0),
        entry(Value=1e11),  # QuotaValue: 0 to 1e10
        entry(Value=True),  # a bool is no number
        entry(Value="10"),
        entry(Value=None, ErrorReason={"ErrorCode": "SERVICE_QUOTA_NOT_AVAILABLE_ERROR"}),  # an error is not a number
        {k: v for k, v in entry().items() if k != "Value"},
        entry(QuotaCode=""),
        entry(QuotaCode="L" * 129),
        entry(QuotaCode=7),
        entry(QuotaName=None),
        entry(QuotaName=""),
        "L-1",
        None,
        [],
    ],
)
def test_a_quota_that_is_not_a_usable_number_is_skipped(bad: Any) -> None:
    assert parse_quota(bad, applied=True) is None


def test_a_good_quota_is_kept_and_a_huge_name_capped() -> None:
    assert parse_quota(entry(Value=0), applied=False) == RawQuota("L-1", PREFIX + "M", 0.0, False)
    long = parse_quota(entry(QuotaName="x" * 1_000_000), applied=True)
    assert long is not None and len(long.name) == 256


@pytest.mark.parametrize("page", [{}, {"Quotas": None}, {"Quotas": {"a": 1}}, [], "Quotas", None])
def test_a_page_without_a_quota_list_is_a_bad_answer(page: Any) -> None:
    with pytest.raises(BadAnswerError, match="ListServiceQuotas answer has no Quotas list"):
        parse_quotas(page, applied=True)


def test_model_summaries_without_an_id_or_name_are_skipped() -> None:
    page = {
        "modelSummaries": [
            {"modelId": "a", "modelName": "A"},
            {"modelId": "b"},  # modelName is optional in botocore's FoundationModelSummary
            {"modelName": "C"},
            {"modelId": "", "modelName": "D"},
            {"modelId": 5, "modelName": "E"},
            "junk",
            {"modelId": "f" * 5000, "modelName": "F" * 5000},
        ]
    }
    assert parse_models(page) == {"a": "A", "f" * 256: "F" * 256}
    with pytest.raises(BadAnswerError):
        parse_models({"modelSummaries": "no"})


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
ENTRY = st.fixed_dictionaries(
    {},
    optional={"QuotaCode": JSON | st.text(max_size=130), "QuotaName": JSON, "Value": JSON | st.floats()},
)


@given(st.lists(ENTRY | JSON, max_size=8), st.booleans())
def test_any_quotas_page_is_parsed_or_refused_never_raised_otherwise(entries: list[Any], applied: bool) -> None:
    for quota in parse_quotas({"Quotas": entries}, applied):
        assert math.isfinite(quota.value) and 0 <= quota.value <= 1e10 and quota.applied is applied
        assert 0 < len(quota.code) <= 128 and 0 < len(quota.name) <= 256


def test_quota_pages_end_and_a_repeated_token_is_a_bad_answer() -> None:
    from exporter.aws.quotas import _pages

    pages = {None: {"Quotas": [entry()], "NextToken": "a"}, "a": {"Quotas": [entry(QuotaCode="L-2")]}}
    asked: list[Any] = []

    def call(**kwargs: Any) -> Any:
        asked.append(kwargs)
        return pages[kwargs.get("NextToken")]

    assert [q.code for q in _pages(call, "ListServiceQuotas", True)] == ["L-1", "L-2"]
    assert [a.get("NextToken") for a in asked] == [None, "a"]
    assert all(a["ServiceCode"] == "bedrock" and a["MaxResults"] == 100 for a in asked)
    pages["a"] = {"Quotas": [], "NextToken": "a"}  # the same token again: it would never end
    with pytest.raises(BadAnswerError, match="NextToken it had returned before"):
        _pages(call, "ListServiceQuotas", True)
