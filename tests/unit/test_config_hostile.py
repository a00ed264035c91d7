"""Hostile and nonsensical configs: each is refused with one line naming the field, never a hang or a traceback."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import botocore.loaders
import pytest
import yaml

from exporter import yamlsafe
from exporter.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    load_config,
    load_config_text,
    period_problem,
    window_reach,
)
from exporter.model import SeriesKey
from exporter.planner import RegexError, compile_dimension_filter, select_series, window
from exporter.preflight import config_problems

MINIMAL = "targets:\n  - regions: [us-east-1]\n"
BEDROCK = MINIMAL + "namespaces:\n  - namespace: AWS/Bedrock/Batch\n"
SECRET = "s3cr3t-value"

# The classic "billion laughs": nine levels of nine aliases, 9**9 strings once expanded, under 400 bytes.
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    """What `check-config` refuses the text for: the config's own validation, then the checks every load makes."""
    try:
        config = load_config_text(text, "cfg.yaml", env or {})
    except ConfigError as exc:
        return list(exc.problems)
    found = config_problems(config)
    assert found, "the config was accepted"
    return found


def only_problem(text: str, env: dict[str, str] | None = None) -> str:
    found = problems(text, env)
    assert len(found) == 1, found
    assert "\n" not in found[0] and "\r" not in found[0]
    return found[0]


# --- YAML bombs -------------------------------------------------------------------------------------------------


def test_billion_laughs_is_refused_at_the_budget() -> None:
    assert len(BILLION_LAUGHS) < 400
    problem = only_problem(BILLION_LAUGHS)
    assert problem.startswith("cfg.yaml:")
    assert f"more than {yamlsafe.MAX_NODES:,} values once aliases are expanded" in problem


@pytest.mark.parametrize(
    "text",
    [
        "targets: " + "[" * 900 + "]" * 900 + "\n",
        "targets:\n" + "".join("  " * i + "- \n" for i in range(900)),
        "targets: " + "{a: " * 900 + "1" + "}" * 900 + "\n",
    ],
    ids=["flow-sequences", "block-sequences", "flow-mappings"],
)
def test_deep_nesting_is_refused_without_recursion_error(text: str) -> None:
    assert f"nested deeper than {yamlsafe.MAX_DEPTH} levels" in only_problem(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &x [1, *x]\n", "alias *x refers to a node that contains it"),
        ("a: &x {b: *x}\n", "alias *x refers to a node that contains it"),
        ("a: *nowhere\n", "found undefined alias"),
        ("a: 1" + "0" * 5000 + "\n", "an integer longer than 100 digits"),
        ("a: 2024-13-45\n", "a date or time that does not exist"),
        ("targets: []\ntargets: []\n", "duplicate key 'targets'"),
        ("a: !!python/object:os.system x\n", "could not determine a constructor"),
        ("a: b\0c\n", "invalid YAML"),
    ],
)
def test_hostile_yaml_is_one_clear_line(text: str, expected: str) -> None:
    problem = only_problem(text)
    assert problem.startswith("cfg.yaml")
    assert expected in problem


def test_text_that_is_not_unicode_is_refused() -> None:
    assert only_problem("a: \ud800\n") == "cfg.yaml: not valid Unicode text"


def test_aliases_and_merge_keys_within_budget_still_work() -> None:
    text = "targets: [&target {regions: [us-east-1]}, {<<: *target, name: second, regions: *regions}]\n"
    text = text.replace("[us-east-1]", "&regions [us-east-1]")
    config = load_config_text(text, env={})
    assert [(t.label, t.regions) for t in config.targets] == [("default", ("us-east-1",)), ("second", ("us-east-1",))]


def test_budget_counts_expansion_not_text() -> None:
    # 200 aliases of a 600-item list: small text, 120,000 values once expanded.
    text = "a: &a [" + ", ".join(["1"] * 600) + "]\nb: [" + ", ".join(["*a"] * 200) + "]\n"
    with pytest.raises(yaml.YAMLError, match="aliases are expanded"):
        yamlsafe.safe_load(text)
    assert yamlsafe.safe_load("a: &a [1, 2]\nb: [*a, *a]\n") == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


# --- the file itself --------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)  # nobody will ever write: a blocking open would hang
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused_without_reading(path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(tmp_path)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(MINIMAL + "#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_config(big)
    sparse = tmp_path / "sparse.yaml"
    with sparse.open("wb") as handle:
        handle.truncate(1 << 40)  # a terabyte that takes no disk: refused from its size alone
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_config(sparse)


def test_file_at_the_cap_is_read_and_symlinks_are_followed(tmp_path: Path) -> None:
    text = MINIMAL + "#" * (MAX_CONFIG_BYTES - len(MINIMAL) - 1) + "\n"
    assert len(text.encode()) == MAX_CONFIG_BYTES
    real = tmp_path / "real.yaml"
    real.write_text(text)
    link = tmp_path / "link.yaml"  # Kubernetes mounts ConfigMaps through symbolic links
    link.symlink_to(real)
    assert load_config(link, env={}).targets[0].regions == ("us-east-1",)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


# --- nonsense values --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BEDROCK + "    interval: .nan\n", "namespaces[0].interval: a duration must be a finite number of seconds"),
        (BEDROCK + "    length: .inf\n", "namespaces[0].length: a duration must be a finite number of seconds"),
        (BEDROCK + "    delay: -.inf\n", "namespaces[0].delay: a duration must be a finite"),
        (BEDROCK + "    interval: 1.0e+400\n", "namespaces[0].interval: a duration must be a finite"),
        (BEDROCK + "    interval: 0.5s\n", "namespaces[0].interval: must be at least 1s and at most 1d, got 500ms"),
        (BEDROCK + "    interval: 2d\n", "namespaces[0].interval: must be at least 1s and at most 1d, got 2d"),
        (BEDROCK + "    delay: 100000000d\n", "namespaces[0].delay: must be at least 0s and at most 455d"),
        (BEDROCK + "    length: 400d\n    delay: 100d\n", "namespaces[0].length: length + delay of"),
        (BEDROCK + "    period: 1.5\n", "namespaces[0].period: CloudWatch counts whole seconds, got 1.5s"),
        (BEDROCK + "    period: 0\n", "namespaces[0].period: must be at least 1s"),
        (BEDROCK + "    discovery: {refresh_interval: 2d}\n", "namespaces[0].discovery.refresh_interval: must be"),
        ("aws: {read_timeout: 0}\n" + MINIMAL, "aws.read_timeout: must be more than 0s and at most 10m, got 0s"),
        ("aws: {connect_timeout: 1h}\n" + MINIMAL, "aws.connect_timeout: must be more than 0s and at most 10m"),
        ("aws: {read_timeout: .nan}\n" + MINIMAL, "aws.read_timeout: a duration must be a finite"),
        ("jobs: {retention: .inf}\n" + MINIMAL, "jobs.retention: a duration must be a finite number of seconds"),
        ("jobs: {retention: 1000d}\n" + MINIMAL, "jobs.retention: must be at least 0s and at most 90d"),
        ("jobs: {lookback: 10000d}\n" + MINIMAL, "jobs.lookback: must be at least 0s and at most 365d"),
        ("jobs: {interval: .nan}\n" + MINIMAL, "jobs.interval: a duration must be a finite"),
        ("jobs: {idle_heartbeat: 500ms}\n" + MINIMAL, "jobs.idle_heartbeat: must be at least 1s and at most 1d (or 0"),
        ("otlp: {interval: 0s}\n" + MINIMAL, "otlp.interval: must be at least 1s"),
        ("otlp: {timeout: 0}\n" + MINIMAL, "otlp.timeout: must be more than 0s"),
        ("pricing: {batch_discount: .nan}\n" + MINIMAL, "pricing.batch_discount: Input should be a finite number"),
        ("pricing: {models: {m: {input: .inf, output: 1}}}\n" + MINIMAL, "pricing.models.m.input: Input should be"),
        ("pricing: {models: {m: {input: 'nan', output: 1}}}\n" + MINIMAL, "pricing.models.m.input: Input should be"),
        ("pricing: {models: {m: {input: 1, output: 1e9}}}\n" + MINIMAL, "pricing.models.m.output: Input should be"),
        ("aws: {max_attempts: .nan}\n" + MINIMAL, "aws.max_attempts: Input should be"),
        ("jobs: {page_size: 1" + "0" * 50 + "}\n" + MINIMAL, "jobs.page_size: Input should be less than"),
    ],
)
def test_nonsense_numbers_are_refused(text: str, expected: str) -> None:
    assert expected in only_problem(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: {listen_address: '0.0.0.0:99999'}\n" + MINIMAL, "server.listen_address: port 99999 is outside"),
        ("server: {metrics_path: /healthz}\n" + MINIMAL, "server.metrics_path: '/healthz' is a built-in path"),
        ("server: {metrics_path: /}\n" + MINIMAL, "server.metrics_path: '/' is a built-in path"),
        ("server: {metrics_path: /-/reload}\n" + MINIMAL, "server.metrics_path: '/-/reload' is a built-in path"),
        ("server: {metrics_path: /api/status/x}\n" + MINIMAL, "server.metrics_path: '/api/status/x' is a built-in"),
        (
            "targets:\n  - regions: [us-east-1]\n    endpoint_url: http://127.0.0.1:99999999\n",
            "targets[0].endpoint_url: not a valid URL (a port must be a number in 1-65535)",
        ),
        (
            "targets:\n  - regions: [us-east-1]\n    endpoint_url: http://127.0.0.1:0\n",
            "targets[0].endpoint_url: the port must be in 1-65535",
        ),
        ("otlp: {endpoint: 'http://collector:70000'}\n" + MINIMAL, "otlp.endpoint: not a valid URL"),
    ],
)
def test_ports_and_paths_are_checked(text: str, expected: str) -> None:
    assert expected in only_problem(text)


def test_listen_port_zero_means_any_free_port() -> None:
    config = load_config_text("server: {listen_address: '127.0.0.1:0'}\n" + MINIMAL, env={})
    assert config.server.listen_address == "127.0.0.1:0"


def test_metrics_path_may_be_any_other_path() -> None:
    config = load_config_text("server: {metrics_path: /prometheus/metrics}\n" + MINIMAL, env={})
    assert config.server.metrics_path == "/prometheus/metrics"


# --- secrets ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\\n", "\\r", "\\0", "\\x1b", "\\x7f", "\\r\\nX-Injected: 1"])
def test_header_values_with_control_characters_are_refused_unseen(bad: str) -> None:
    text = f'otlp:\n  headers: {{authorization: "Bearer {SECRET}{bad}"}}\n' + MINIMAL
    problem = only_problem(text)
    assert problem.startswith("otlp.headers: 'authorization': the value contains a control character")
    assert SECRET not in problem


def test_header_secret_from_the_environment_is_checked_too() -> None:
    text = "otlp:\n  headers: {authorization: '${TOKEN}'}\n" + MINIMAL
    problem = only_problem(text, env={"TOKEN": f"Bearer {SECRET}\nX-Evil: 1"})
    assert problem.startswith("otlp.headers:") and SECRET not in problem
    config = load_config_text(text, env={"TOKEN": f"Bearer {SECRET}\tx"})  # a tab is allowed inside a value
    assert config.otlp.headers["authorization"].get_secret_value() == f"Bearer {SECRET}\tx"


def test_header_names_must_be_tokens() -> None:
    assert "not a valid HTTP header name" in only_problem("otlp:\n  headers: {'bad name': x}\n" + MINIMAL)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (f"targets:\n  - regions: [us-east-1]\n    endpoint_url: http://user:{SECRET}@host:4566\n", "targets[0]"),
        (f"otlp: {{endpoint: 'https://user:{SECRET}@collector:4318'}}\n" + MINIMAL, "otlp.endpoint"),
        (f"otlp: {{endpoint: 'https://{SECRET}@collector'}}\n" + MINIMAL, "otlp.endpoint"),
    ],
)
def test_credentials_in_urls_are_refused_unseen(text: str, field: str) -> None:
    problem = only_problem(text)
    assert problem.startswith(field) and "credentials in the URL" in problem
    assert SECRET not in problem


@pytest.mark.parametrize(
    "text",
    [
        f"targets:\n  - regions: [us-east-1]\n    role_arn: {SECRET}\n",
        MINIMAL + f"    role_arn: arn:aws:iam::111111111111:role/r\n    external_id: [{SECRET}]\n",
        f"otlp:\n  headers: {{authorization: [{SECRET}]}}\n" + MINIMAL,
        f"targets:\n  - regions: [us-east-1]\n    endpoint_url: 'ftp://{SECRET}'\n",
    ],
)
def test_fields_that_may_hold_secrets_are_never_echoed(text: str) -> None:
    assert all(SECRET not in p for p in problems(text))


def test_keys_with_control_characters_stay_on_one_line() -> None:
    problem = only_problem(MINIMAL + '"x\\ny": 1\n')
    assert problem == "x\\ny: unknown key"


# --- periods as CloudWatch accepts them -------------------------------------------------------------------------


def test_period_rules_are_botocores() -> None:
    """The rules below are read from botocore's MetricStat.Period documentation: fail if AWS rewrites it."""
    model = botocore.loaders.Loader().load_service_model("cloudwatch", "service-2")
    doc = html.unescape(re.sub(r"<[^>]+>", "", model["shapes"]["MetricStat"]["members"]["Period"]["documentation"]))
    assert "the period can be 1, 5, 10, 20, 30, 60, or any multiple of 60" in doc
    assert "between 3 hours and 15 days ago - Use a multiple of 60 seconds" in doc
    assert "between 15 and 63 days ago - Use a multiple of 300 seconds" in doc
    assert "greater than 63 days ago - Use a multiple of 3600 seconds" in doc


@pytest.mark.parametrize("period", [1, 5, 10, 20, 30, 60, 120, 300, 3600, 86400])
def test_periods_cloudwatch_accepts(period: int) -> None:
    length = max(period, 60)
    text = BEDROCK + f"    period: {period}\n    length: {length}\n    delay: 0\n"
    config = load_config_text(text, env={})
    assert {m.period for m in config.namespaces[0].resolved_metrics()} == {period}


@pytest.mark.parametrize("period", [2, 15, 45, 90, 301])
def test_periods_cloudwatch_refuses(period: int) -> None:
    problem = only_problem(BEDROCK + f"    period: {period}\n    length: 1h\n")
    assert problem.startswith("namespaces[0].period: period must be 1, 5, 10, 20, 30 or a multiple of 60 seconds")


@pytest.mark.parametrize(
    ("period", "length", "delay", "multiple"),
    [
        (30, "3h", "0s", 60),  # reaches 3h + 60s: sub-minute periods return nothing
        (20, "2h", "1h", 60),  # the delay counts
        (60, "15d", "0s", 300),
        (120, "20d", "0s", 300),
        (300, "63d", "0s", 3600),
        (900, "100d", "1h", 3600),
    ],
)
def test_periods_too_fine_for_the_window_age_are_refused(period: int, length: str, delay: str, multiple: int) -> None:
    problem = only_problem(BEDROCK + f"    period: {period}\n    length: {length}\n    delay: {delay}\n")
    assert problem.startswith("namespaces[0].period: the window reaches back up to")
    assert f"a multiple of {multiple}s, got {period}s" in problem


@pytest.mark.parametrize(
    ("period", "length", "delay"),
    [(30, "2h", "59m"), (60, "14d", "0s"), (300, "62d", "0s"), (3600, "400d", "1d"), (20, "2h", "30m")],
)
def test_periods_coarse_enough_for_the_window_age_are_accepted(period: int, length: str, delay: str) -> None:
    load_config_text(BEDROCK + f"    period: {period}\n    length: {length}\n    delay: {delay}\n", env={})


def test_window_problem_names_the_metric_field_that_set_it() -> None:
    text = MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: A}, {name: B, period: 30, length: 4h}]\n"
    problem = only_problem(text)
    assert problem.startswith("namespaces[0].metrics[1].period: the window reaches back")
    assert "(metric B)" in problem


@pytest.mark.parametrize("now", [1_700_000_000.0, 1_700_000_017.5, 1_700_000_029.9])
@pytest.mark.parametrize(("period", "length", "delay"), [(30, 3600, 60), (20, 10_000, 0), (60, 7200, 120)])
def test_reach_bounds_the_planners_window(now: float, period: int, length: int, delay: int) -> None:
    start, _ = window(now, period, length, delay)
    assert now - start <= window_reach(period, length, delay)


def test_period_problem_is_none_for_good_windows() -> None:
    assert period_problem(20, 600, 60) is None
    assert period_problem(20, 3 * 3600, 0) is not None


# --- RE2 dimension filters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [(r"(a)\1", "invalid escape sequence"), ("(?=a)b", "invalid perl operator"), ("(?<!a)b", "invalid perl operator")],
)
def test_patterns_re2_cannot_compile_are_refused_with_the_path(pattern: str, reason: str) -> None:
    text = MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: A}]\n"
    text += f"    discovery: {{dimension_filters: {{ModelId: {json.dumps(pattern)}}}}}\n"
    problem = only_problem(text)
    assert problem.startswith("namespaces[0].discovery.dimension_filters.ModelId: not a regular expression RE2")
    assert reason in problem


def test_re2_errors_raise_instead_of_logging(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RegexError):
        compile_dimension_filter(r"(b)\1")
    assert capfd.readouterr().err == ""


@pytest.mark.timeout(30)
def test_catastrophic_backtracking_pattern_returns_promptly() -> None:
    metric = (
        load_config_text(MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: A}]\n", env={})
        .namespaces[0]
        .resolved_metrics()
    )
    series = [SeriesKey.of("X", "A", {"ModelId": "a" * 34 + "!"}), SeriesKey.of("X", "A", {"ModelId": "aaaa"})]
    kept = select_series(series, metric, {"ModelId": "^(a+)+$"})
    assert kept == [series[1]]


def test_filters_keep_unanchored_search_semantics() -> None:
    metric = (
        load_config_text(MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: A}]\n", env={})
        .namespaces[0]
        .resolved_metrics()
    )
    models = ["anthropic.claude-3-haiku", "amazon.nova-pro", "claude-x"]
    series = [SeriesKey.of("X", "A", {"ModelId": m}) for m in models]
    assert [dict(s.dimensions)["ModelId"] for s in select_series(series, metric, {"ModelId": "claude"})] == [
        "anthropic.claude-3-haiku",
        "claude-x",
    ]
    assert [dict(s.dimensions)["ModelId"] for s in select_series(series, metric, {"ModelId": "^claude"})] == [
        "claude-x"
    ]
    # a series without the filtered dimension never passes
    assert select_series([SeriesKey.of("X", "A", {})], metric, {"ModelId": ""}) == []


# --- reload endpoint and collisions -----------------------------------------------------------------------------


def test_reload_endpoint_is_off_by_default() -> None:
    assert load_config_text(MINIMAL, env={}).server.enable_reload is False
    assert load_config_text("server: {enable_reload: true}\n" + MINIMAL, env={}).server.enable_reload is True


def test_collisions_are_refused_with_the_field_path() -> None:
    text = MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: FooBar}, {name: foo_bar}]\n"
    assert only_problem(text).startswith("namespaces[0].metrics[1].name: ")


@pytest.mark.parametrize(
    ("namespaces", "where"),
    [
        # YACE's rules map AWS/X and X to one family name: two namespaces, one family, two meanings
        (
            "  - namespace: AWS/Bedrock/Batch\n  - namespace: Bedrock/Batch\n"
            "    metrics: [{name: NumberOfRecordsPendingProcessing, statistics: [Maximum]}]\n",
            "namespaces[1].metrics[0].name",
        ),
        # an Insights query named like a built-in family, or with the exporter's reserved prefixes
        (
            "  - namespace: AWS/Bedrock/Batch\n    insights:\n      - name: bedrock_batch_model_input_price_x\n"
            '        query: SELECT AVG(NumberOfRecordsPendingProcessing) FROM "AWS/Bedrock/Batch"\n',
            "namespaces[0].insights[0].name",
        ),
        (
            "  - namespace: AWS/Bedrock/Batch\n    insights:\n"
            "      - name: aws_bedrock_batch_number_of_records_pending_processing_maximum\n"
            '        query: SELECT MAX(NumberOfRecordsPendingProcessing) FROM "AWS/Bedrock/Batch"\n',
            "namespaces[0].insights[0]",
        ),
    ],
)
def test_configured_names_colliding_with_other_families_are_refused(namespaces: str, where: str) -> None:
    problem = only_problem(MINIMAL + "namespaces:\n" + namespaces)
    assert problem.startswith(where), problem


_NS = "namespaces:\n  - namespace: AWS/Bedrock\n    metrics: [{name: Invocations, statistics: [Sum]}]\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pricing: {models: {'': {input: 1, output: 2}}}\n" + MINIMAL, "pricing.models"),
        ("pricing: {aliases: {'': m}}\n" + MINIMAL, "pricing.aliases"),
        ("otlp: {resource_attributes: {'': x}}\n" + MINIMAL, "otlp.resource_attributes"),
        ("otlp: {headers: {'': x}}\n" + MINIMAL, "otlp.headers"),
        (_NS + "    discovery: {dimension_filters: {'': '^a$'}}\n" + MINIMAL, "dimension_filters"),
    ],
)
def test_empty_mapping_keys_are_refused_with_the_field_path(text: str, expected: str) -> None:
    # Issue 26, case 10: an empty model id or dimension name names nothing and was accepted silently.
    problem = only_problem(text)
    assert problem.endswith(f"{expected}: an empty key names nothing"), problem
