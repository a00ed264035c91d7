"""Hostile configs through the real command line: `check-config` and `run` both exit 2 with one line naming the field.

Each case runs the CLI in a subprocess, as an operator would. A config that were wrongly accepted would make `run`
start serving: the subprocess timeout (the acceptance's 5 s) then fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_config_hostile import BILLION_LAUGHS

MINIMAL = "targets:\n  - regions: [us-east-1]\n"
BEDROCK = MINIMAL + "namespaces:\n  - namespace: AWS/Bedrock/Batch\n"
SECRET = "s3cr3t-value"
DEADLINE = 5.0  # seconds: issue 15's acceptance for every refused config


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The exporter's CLI in a subprocess, with the AWS environment cleared so nothing reaches a real account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OTEL_"))}
    env["AWS_REGION"] = "us-east-1"
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env,
        check=False,
    )


def assert_refused(path: str, expected: str, hidden: str | None = None) -> None:
    for args in (("check-config", path), ("run", "--config", path)):
        result = cli(*args)
        lines = result.stderr.splitlines()
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(lines) == 1, (args, lines)
        assert lines[0].startswith("config error: ") and expected in lines[0], (args, lines)
        assert result.stdout == ""
        if hidden is not None:
            assert hidden not in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BILLION_LAUGHS, "refused: more than 100,000 values once aliases are expanded"),
        ("targets: " + "[" * 900 + "]" * 900 + "\n", "refused: nested deeper than 64 levels"),
        (BEDROCK + "    interval: .nan\n", "namespaces[0].interval: a duration must be a finite number"),
        (BEDROCK + "    length: .inf\n", "namespaces[0].length: a duration must be a finite number"),
        (BEDROCK + "    delay: 100000000d\n", "namespaces[0].delay: must be at least 0s and at most 455d"),
        (BEDROCK + "    period: 30s\n    length: 4h\n", "namespaces[0].period: the window reaches back"),
        (BEDROCK + "    period: 45s\n", "namespaces[0].period: period must be 1, 5, 10, 20, 30 or a multiple of 60"),
        ("aws: {read_timeout: 0}\n" + MINIMAL, "aws.read_timeout: must be more than 0s"),
        ("jobs: {retention: .inf}\n" + MINIMAL, "jobs.retention: a duration must be a finite number"),
        ("pricing: {models: {m: {input: .nan, output: 1}}}\n" + MINIMAL, "pricing.models.m.input:"),
        (MINIMAL + "    endpoint_url: http://127.0.0.1:99999999\n", "targets[0].endpoint_url: not a valid URL"),
        ("server: {listen_address: '0.0.0.0:99999'}\n" + MINIMAL, "server.listen_address: port 99999"),
        ("server: {metrics_path: /healthz}\n" + MINIMAL, "server.metrics_path: '/healthz' is a built-in path"),
        (
            MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: A}]\n"
            "    discovery: {dimension_filters: {ModelId: '(a)\\1'}}\n",
            "namespaces[0].discovery.dimension_filters.ModelId: not a regular expression RE2 accepts",
        ),
    ],
)
def test_refused_by_check_config_and_run(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert_refused(str(path), expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'otlp:\n  headers: {{authorization: "Bearer {SECRET}\\r\\nX-Evil: 1"}}\n' + MINIMAL, "otlp.headers:"),
        (MINIMAL + f"    endpoint_url: http://admin:{SECRET}@127.0.0.1:4566\n", "credentials in the URL"),
        (f"otlp: {{endpoint: 'http://admin:{SECRET}@collector:4318'}}\n" + MINIMAL, "otlp.endpoint: credentials"),
    ],
)
def test_secrets_are_refused_without_being_echoed(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert_refused(str(path), expected, hidden=SECRET)


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert_refused(str(fifo), "not a regular file")
    assert_refused(str(tmp_path), "not a regular file")
    if os.path.exists("/dev/zero"):
        assert_refused("/dev/zero", "/dev/zero: not a regular file")


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(MINIMAL + "#" * (1024 * 1024))
    assert_refused(str(path), "larger than 1024 KiB")


def test_collision_is_refused_with_the_field_path(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + "namespaces:\n  - namespace: X\n    metrics: [{name: FooBar}, {name: foo_bar}]\n")
    assert_refused(str(path), "namespaces[0].metrics[1].name: ")


def test_twenty_second_periods_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(BEDROCK + "    period: 20s\n    length: 2m\n")
    result = cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_one_run_reports_the_problems_that_others_would_hide(tmp_path: Path) -> None:
    """Checks of a whole section wait for its fields (a region check for an unknown key beside it, a period for
    another), and the family check for a valid config: check-config leaves the bad fields out and looks again."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "aws:\n  max_attemps: 3\n"
        "targets:\n  - regions: [us-esat-1]\n    externl_id: x\n"
        "namespaces:\n  - namespace: AWS/Bedrock/Batch\n    intervall: 5s\n    period: 7s\n"
    )
    result = cli("check-config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("config error: ") for line in lines)
    found = [line.removeprefix("config error: ").split(": ", 1)[0] for line in lines]
    assert found == [
        "aws.max_attemps",
        "targets[0].externl_id",
        "namespaces[0].intervall",
        "targets[0].regions[0]",
        "namespaces[0].period",
    ], lines
    collision = tmp_path / "collision.yaml"
    collision.write_text(
        MINIMAL
        + "aws:\n  max_attemps: 3\nnamespaces:\n  - namespace: X\n    metrics: [{name: FooBar}, {name: foo_bar}]\n"
    )
    lines = cli("check-config", str(collision)).stderr.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["aws.max_attemps", "namespaces[0].metrics[1].name"], lines
