"""Property-based tests: arbitrary input gives a clean error or a valid result, never an unhandled exception."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exporter.aws.bedrock import parse_job
from exporter.aws.cloudwatch import parse_list_metrics_page
from exporter.config import Config, ConfigError, load_config_text
from exporter.errors import BadAnswerError
from exporter.naming import dimension_label, metric_name
from exporter.results import Answer, merge_page

# The profile (tests/conftest.py: "ci" by default, derandomised; "explore" for fuzzing) decides the examples' count.
SETTINGS = settings()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.datetimes(timezones=st.just(UTC)),
)
json_like: Any = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)
config_keys = st.sampled_from(
    [
        "targets",
        "namespaces",
        "server",
        "aws",
        "jobs",
        "pricing",
        "regions",
        "namespace",
        "metrics",
        "name",
        "statistics",
        "period",
        "length",
        "delay",
        "interval",
        "role_arn",
        "endpoint_url",
        "missing_data",
        "x",
    ]
)
config_like: Any = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 100000),
        st.text(max_size=12),
        st.sampled_from(["us-east-1", "60s", "5m", "zero", "Average", "p99", "AWS/Bedrock/Batch"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(config_keys, inner, max_size=4)),
    max_leaves=25,
)


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_is_a_config_or_a_clean_error(text: str) -> None:
    try:
        assert isinstance(load_config_text(text, env={}), Config)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and "\n" not in p for p in exc.problems)


@SETTINGS
@given(config_like)
def test_any_structure_is_a_config_or_a_clean_error(data: Any) -> None:
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    try:
        config = load_config_text(text, env={})
    except ConfigError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems)
        return
    for ns in config.namespaces:  # a valid config always resolves and names its series
        for metric in ns.resolved_metrics():
            for stat in metric.statistics:
                assert metric_name(ns.namespace, metric.name, stat).startswith("aws_")


@SETTINGS
@given(json_like)
# Found by a random CI run (issue 14): an Id that is not a string reached a set lookup (TypeError: unhashable type).
@example([{"Id": []}])
def test_any_get_metric_data_page_merges_or_is_a_bad_answer(results: Any) -> None:
    answers: dict[str, Answer] = {}
    try:
        merge_page(answers, results, {"q0", "q1"}, set())
    except BadAnswerError:
        return
    assert set(answers) <= {"q0", "q1"}
    for answer in answers.values():
        point = answer.newest
        assert point is None or (isinstance(point.value, float) and isinstance(point.timestamp, float))


@SETTINGS
@given(
    st.lists(
        st.fixed_dictionaries(
            {"Id": st.sampled_from(["q0", "q1"])},
            optional={
                "Timestamps": st.lists(st.datetimes(timezones=st.just(UTC)), max_size=4),
                "Values": st.lists(st.floats(allow_nan=True), max_size=4),
                "StatusCode": st.sampled_from(["Complete", "PartialData", "InternalError", "Forbidden"]),
            },
        ),
        max_size=4,
    )
)
def test_well_shaped_pages_keep_the_newest_point(results: list[dict[str, Any]]) -> None:
    answers: dict[str, Answer] = {}
    try:
        merge_page(answers, results, {"q0", "q1"}, set())
    except BadAnswerError:
        assert any(len(r.get("Timestamps", [])) != len(r.get("Values", [])) for r in results)
        return
    for result in results:
        for when in result.get("Timestamps", []):
            newest = answers[result["Id"]].newest
            assert newest is not None and newest.timestamp >= when.timestamp()


@SETTINGS
@given(json_like)
def test_any_list_metrics_page_parses_or_is_a_bad_answer(page: Any) -> None:
    try:
        keys = parse_list_metrics_page(page if isinstance(page, dict) else {"Metrics": page}, "NS")
    except BadAnswerError:
        return
    assert all(k.namespace == "NS" for k in keys)


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "jobArn",
                "jobName",
                "modelId",
                "status",
                "submitTime",
                "endTime",
                "jobExpirationTime",
                "totalRecordCount",
                "processedRecordCount",
                "successRecordCount",
                "errorRecordCount",
                "modelInvocationType",
            ]
        ),
        scalars,
    )
)
def test_any_job_summary_parses_or_is_skipped(summary: dict[str, Any]) -> None:
    job = parse_job(summary)
    if job is not None:
        assert job.status in summary["status"] and isinstance(job.submit_time, float)


@SETTINGS
@given(st.text(max_size=40))
def test_any_dimension_name_becomes_a_valid_label(name: str) -> None:
    import re

    assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", dimension_label(name))
