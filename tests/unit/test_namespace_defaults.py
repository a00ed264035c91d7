"""Namespace defaults are data: one table entry makes a namespace pollable without `metrics`, planned and named."""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator
from types import MappingProxyType

import pytest

from exporter.config import NAMESPACE_DEFAULTS, ConfigError, NamespaceDefaults, defaults_for, load_config_text
from exporter.families import config_families
from exporter.model import BEDROCK_BATCH_NAMESPACE, MissingData, SeriesKey
from exporter.plan import run_plan
from exporter.planner import plan
from exporter.sinks.otlp import cloudwatch_name

EXAMPLE = "AWS/ExampleService"
CONFIG = f"targets:\n  - regions: [us-east-1]\n    account_id: '123456789012'\nnamespaces:\n  - namespace: {EXAMPLE}\n"


@pytest.fixture
def example_entry() -> Iterator[None]:
    """The one table entry a new namespace default needs (removed again after the test)."""
    NAMESPACE_DEFAULTS[EXAMPLE] = NamespaceDefaults(
        metrics=(("Invocations", ("Sum",)), ("Latency", ("Average", "p99"))),
        missing_data=MissingData.ZERO,
        units=MappingProxyType({"Invocations": "{invocation}"}),
    )
    try:
        yield
    finally:
        del NAMESPACE_DEFAULTS[EXAMPLE]


def test_without_an_entry_a_namespace_needs_its_metrics() -> None:
    with pytest.raises(ConfigError, match=r"'metrics' is required for namespace 'AWS/ExampleService'"):
        load_config_text(CONFIG, env={})


@pytest.mark.usefixtures("example_entry")
def test_one_entry_makes_the_namespace_resolved_planned_and_named() -> None:
    config = load_config_text(CONFIG, env={})
    (namespace,) = config.namespaces
    resolved = {m.name: m for m in namespace.resolved_metrics()}
    assert {name: m.statistics for name, m in resolved.items()} == {
        "Invocations": ("Sum",),
        "Latency": ("Average", "p99"),
    }
    assert {m.missing_data for m in resolved.values()} == {MissingData.ZERO}  # the entry's, not NaN
    assert (resolved["Latency"].period, resolved["Latency"].length) == (60, 300)  # the namespace's window

    # planned: GetMetricData queries for each metric and statistic of each discovered series
    series = [SeriesKey.of(EXAMPLE, name, {"FunctionName": "f"}) for name in resolved]
    (batch,) = plan(series, tuple(resolved.values()), 1_000_000.0, 500)
    assert batch.size == 3
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert run_plan(config, True, "json", 2) == 0
    (row,) = json.loads(buffer.getvalue())["namespaces"]
    assert (row["namespace"], row["series"], row["queries_per_cycle"], row["job_aware"]) == (EXAMPLE, 4, 6, False)

    # named: the families it exports, on /metrics and over OTLP (unit from the entry)
    names = sorted(family.name for _, family, _ in config_families(config))
    assert names == [
        "aws_exampleservice_invocations_sum",
        "aws_exampleservice_latency_average",
        "aws_exampleservice_latency_p99",
    ]
    assert cloudwatch_name(EXAMPLE, "Invocations", "Sum").unit == "{invocation}"
    assert cloudwatch_name(EXAMPLE, "Latency", "Average").unit == ""


def test_the_shipped_table_holds_bedrock_batch_and_nothing_else_is_special() -> None:
    bedrock = defaults_for(BEDROCK_BATCH_NAMESPACE)
    assert [name for name, _ in bedrock.metrics] == [
        "NumberOfRecordsPendingProcessing",
        "NumberOfTokensPendingProcessing",
        "NumberOfInputTokensProcessedPerMinute",
        "NumberOfOutputTokensProcessedPerMinute",
    ]
    assert (bedrock.missing_data, bedrock.follows_jobs, bedrock.model_dimension) == (MissingData.ZERO, True, "ModelId")
    other = defaults_for("AWS/Bedrock")
    assert (other.metrics, other.missing_data, other.follows_jobs, other.model_dimension) == (
        (),
        MissingData.NAN,
        False,
        None,
    )
    assert math.isnan(other.missing_data.fill() or 0.0)
