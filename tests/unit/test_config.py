from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import (
    Config,
    ConfigError,
    format_location,
    json_schema,
    load_config,
    load_config_text,
    parse_duration,
)
from exporter.model import BEDROCK_BATCH_NAMESPACE, MissingData

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = "targets:\n  - regions: [us-east-1]\n"


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "cfg.yaml", env or {})
    return list(info.value.problems)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (60, 60.0),
        (1.5, 1.5),
        ("60s", 60.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("2d", 172800.0),
        ("90", 90.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "-5s", "", "m", True, None, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_minimal_config_gets_bedrock_defaults() -> None:
    config = load_config_text(MINIMAL, env={})
    (ns,) = config.namespaces
    assert ns.namespace == BEDROCK_BATCH_NAMESPACE
    metrics = {m.name: m for m in ns.resolved_metrics()}
    assert set(metrics) == {
        "NumberOfRecordsPendingProcessing",
        "NumberOfTokensPendingProcessing",
        "NumberOfInputTokensProcessedPerMinute",
        "NumberOfOutputTokensProcessedPerMinute",
    }
    assert metrics["NumberOfRecordsPendingProcessing"].statistics == ("Maximum", "Average")
    assert metrics["NumberOfInputTokensProcessedPerMinute"].statistics == ("Sum", "Average")
    assert all(m.missing_data is MissingData.ZERO for m in metrics.values())
    assert all((m.period, m.length, m.delay) == (60, 300, 60) for m in metrics.values())
    assert config.server.listen_address == "0.0.0.0:9816"


def test_metric_settings_override_namespace_settings() -> None:
    config = load_config_text(
        MINIMAL
        + """
namespaces:
  - namespace: AWS/Other
    period: 5m
    length: 10m
    statistics: [Maximum]
    metrics:
      - name: A
      - name: B
        statistics: [p99, p99.9]
        period: 1m
        missing_data: drop
""",
        env={},
    )
    a, b = config.namespaces[0].resolved_metrics()
    assert (a.statistics, a.period, a.length, a.missing_data) == (("Maximum",), 300, 600, MissingData.NAN)
    assert (b.statistics, b.period, b.missing_data) == (("p99", "p99.9"), 60, MissingData.DROP)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("targets: []\n", "targets: needs at least 1 item(s)"),
        ("targets:\n  - regions: [us-east-1]\n    colour: red\n", "targets[0].colour: unknown key"),
        ("targets:\n  - regions: [us-east-1, mars-1]\n", "targets[0].regions: 'mars-1' is not an AWS region"),
        ("targets:\n  - regions: [us-east-1]\n    role_arn: nope\n", "targets[0].role_arn: String should match"),
        (
            "targets:\n  - regions: [us-east-1]\n    external_id: abc\n",
            "targets[0]: external_id is only used together with role_arn",
        ),
        (MINIMAL + "namespaces:\n  - namespace: AWS/EC2\n", "namespaces[0]: 'metrics' is required"),
        (
            MINIMAL + "namespaces:\n  - namespace: AWS/Bedrock/Batch\n    interval: soon\n",
            "namespaces[0].interval: invalid duration 'soon'",
        ),
        (
            MINIMAL + "namespaces:\n  - namespace: AWS/Bedrock/Batch\n    period: 45s\n",
            "namespaces[0].period: period must be 1, 5, 10, 20, 30 or a multiple of 60 seconds, got 45s",
        ),
        (
            MINIMAL + "namespaces:\n  - namespace: AWS/Bedrock/Batch\n    length: 30s\n",
            "namespaces[0].length: 30s is shorter than the period (60s)",
        ),
        (
            MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: A, statistics: [Median]}]\n",
            "namespaces[0].metrics[0].statistics: unknown statistic 'Median'",
        ),
        (
            MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: A, missing_data: maybe}]\n",
            "namespaces[0].metrics[0].missing_data: Input should be 'nan', 'zero' or 'drop'",
        ),
        (
            MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: A}]\n    discovery: {mode: static}\n",
            "namespaces[0].discovery: mode static needs at least one dimension set",
        ),
        (
            MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: A}]\n"
            "    discovery: {dimension_filters: {ModelId: '('}}\n",
            "namespaces[0].discovery.dimension_filters.ModelId: not a regular expression RE2 accepts: missing )",
        ),
        (
            "targets:\n  - regions: [us-east-1]\n    namespaces: [AWS/EC2]\n",
            "targets[0].namespaces: 'AWS/EC2' is not configured",
        ),
        ("server: {listen_address: 'no-port'}\n" + MINIMAL, "server.listen_address: String should match"),
        ("aws: {max_queries_per_call: 501}\n" + MINIMAL, "aws.max_queries_per_call: Input should be less than"),
        ("targets: [\n", "cfg.yaml:2:1: invalid YAML"),
        ("", "cfg.yaml: the file is empty"),
        ("- a\n- b\n", "cfg.yaml: the top level must be a mapping"),
        ("targets:\n  - regions: ['${REGION}']\n", "targets[0].regions[0]: environment variable REGION is not set"),
        (
            MINIMAL + "namespaces:\n  - namespace: AWS/Bedrock/Batch\n"
            "    insights: [{name: a_b, query: 'SELECT AVG(A) FROM \"Other\"'}]\n",
            "namespaces[0].insights[0].query: reads namespace 'Other'",
        ),
        (
            MINIMAL + "namespaces:\n  - namespace: X\n    insights: [{name: a_b, query: SELECT AVG(A) FROM X}]\n"
            "  - namespace: Y\n    insights: [{name: a_b, query: SELECT AVG(A) FROM Y}]\n",
            "namespaces[1].insights[0].name: 'a_b' is already used in namespaces[0]",
        ),
    ],
)
def test_bad_configs_name_the_field(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found
    assert all("\n" not in p for p in found)


def test_every_problem_is_reported_at_once() -> None:
    found = problems("targets:\n  - regions: [nowhere]\n    colour: red\n")
    assert len(found) == 2


def test_environment_variables_are_expanded() -> None:
    text = "targets:\n  - regions: ['${REGION}']\n    endpoint_url: '${URL:-http://127.0.0.1:1}'\n"
    config = load_config_text(text, env={"REGION": "eu-west-1"})
    assert config.targets[0].regions == ("eu-west-1",)
    assert config.targets[0].endpoint_url == "http://127.0.0.1:1"


def test_config_is_immutable() -> None:
    config = load_config_text(MINIMAL, env={})
    with pytest.raises(ValueError, match="frozen"):
        config.targets[0].regions = ("eu-west-1",)  # type: ignore[misc]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")


def test_location_format() -> None:
    assert format_location(("targets", 1, "regions", 0)) == "targets[1].regions[0]"
    assert format_location(()) == "<root>"


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config.example.yaml", env={})
    assert config.namespaces[0].namespace == BEDROCK_BATCH_NAMESPACE
    # the commented role target is valid too, once uncommented
    text = (ROOT / "config.example.yaml").read_text()
    for key in ("regions", "role_arn", "external_id"):
        text = text.replace(f"  #   {key}:", f"    {key}:")
    text = text.replace("  # - name: data-science", "  - name: data-science")
    env = {"EXPORTER_ROLE_ARN": "arn:aws:iam::111111111111:role/reader"}
    assert load_config_text(text, env=env).targets[1].role_arn == env["EXPORTER_ROLE_ARN"]


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "docs" / "config.schema.json").read_text()
    assert committed == json_schema(), "run: bedrock-batch-exporter schema > docs/config.schema.json"
    assert json.loads(committed)["additionalProperties"] is False


def _option_names(schema: dict, node: dict) -> set[str]:  # type: ignore[type-arg]
    names: set[str] = set()
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    for key, sub in node.get("properties", {}).items():
        names.add(key)
        names |= _option_names(schema, sub)
    branches = [*node.get("anyOf", []), node.get("items"), node.get("additionalProperties")]
    for branch in branches:
        if isinstance(branch, dict):
            names |= _option_names(schema, branch)
    return names


def test_example_config_mentions_every_option() -> None:
    schema = json.loads(json_schema())
    text = (ROOT / "config.example.yaml").read_text()
    missing = sorted(n for n in _option_names(schema, schema) if f"{n}:" not in text)
    assert not missing, f"document these options in config.example.yaml: {missing}"


@pytest.mark.parametrize(
    ("text", "sinks"),
    [
        ("", {"prometheus"}),
        ("sinks: [otlp]\n", {"otlp"}),
        ("sinks: [otlp, prometheus]\n", {"prometheus", "otlp"}),
        ("mode: prometheus\n", {"prometheus"}),
        ("mode: otlp\n", {"otlp"}),
        ("mode: both\n", {"prometheus", "otlp"}),
        ("mode: both\nsinks: [prometheus, otlp]\n", {"prometheus", "otlp"}),  # both spellings, saying the same
    ],
)
def test_sinks_and_their_older_spelling_mode(text: str, sinks: set[str]) -> None:
    assert load_config_text(text + MINIMAL, env={}).enabled_sinks == sinks


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("sinks: []\n", "sinks: needs at least 1 item(s)"),
        ("sinks: [statsd]\n", "sinks[0]: Input should be 'prometheus' or 'otlp'"),
        ("sinks: [otlp, otlp]\n", "sinks: a sink is listed more than once"),
        ("mode: otlp\nsinks: [prometheus]\n", "mode: 'otlp' says other sinks than 'sinks'; keep only sinks"),
    ],
)
def test_bad_sinks_are_refused_with_the_field(text: str, problem: str) -> None:
    assert problems(text + MINIMAL) == [problem]


def test_a_misspelt_region_is_refused_with_the_nearest_names() -> None:
    (problem,) = problems("targets:\n  - regions: [us-east-1, us-esat-1]\n")
    assert problem.startswith("targets[0].regions[1]: 'us-esat-1' is not a region botocore ")
    assert "did you mean us-east-1 or " in problem
    (unknown,) = problems("targets:\n  - regions: [zz-nowhere-9]\n")
    assert "see the AWS region list" in unknown and "endpoint_url" in unknown


def test_every_partitions_regions_are_known_and_a_custom_endpoint_may_serve_others() -> None:
    for region in ("us-east-1", "eu-central-2", "cn-north-1", "us-gov-west-1", "us-iso-east-1"):
        assert load_config_text(f"targets:\n  - regions: [{region}]\n", env={}).targets[0].regions == (region,)
    custom = "targets:\n  - regions: [xx-lab-1]\n    endpoint_url: http://127.0.0.1:4566\n"
    assert load_config_text(custom, env={}).targets[0].regions == ("xx-lab-1",)


def _meaning(config: Config) -> dict[str, Any]:
    """What a config does, spelled one way: sinks as enabled, each namespace's metrics and insights as resolved."""
    dumped = config.model_dump(mode="json", exclude={"sinks", "mode", "targets"})
    dumped["sinks"] = sorted(config.enabled_sinks)
    for ns, out in zip(config.namespaces, dumped["namespaces"], strict=True):
        out["metrics"] = [vars(m) | {"missing_data": m.missing_data.value} for m in ns.resolved_metrics()]
        out["insights"] = [vars(q) | {"missing_data": q.missing_data.value} for q in ns.resolved_insights()]
        del out["missing_data"]
    return dumped


def test_the_example_config_sets_only_the_built_in_defaults() -> None:
    """config.example.yaml is baked into the image as its config: what it sets uncommented must be the defaults
    (extras stay commented out), apart from the targets, which have none."""
    text = (ROOT / "config.example.yaml").read_text()
    example = load_config_text(text, env={})
    defaults = load_config_text(yaml.safe_dump({"targets": yaml.safe_load(text)["targets"]}), env={})
    assert _meaning(example) == _meaning(defaults)
