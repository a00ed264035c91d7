"""The command line as a user meets it: exit codes, one-line errors, clean shutdown, the demo."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.server import SimulatedAws
from tests.conftest import free_port, put_values, run_cli, start_job, wait_for

BAD_CONFIGS = {
    "unknown key": ("targets:\n  - regions: [us-east-1]\n    regoins: [x]\n", "targets[0].regoins: unknown key"),
    "bad region": ("targets:\n  - regions: [us-east-1, moon-1]\n", "targets[0].regions: 'moon-1'"),
    "bad duration": (
        "targets:\n  - regions: [us-east-1]\nnamespaces:\n  - namespace: AWS/Bedrock/Batch\n    interval: often\n",
        "namespaces[0].interval: invalid duration",
    ),
    "bad yaml": ("targets: [\n", "invalid YAML"),
    "no targets": ("server: {}\n", "targets: Field required"),
    "wrong type": ("targets: 5\n", "targets: Input should be a valid tuple"),
}


# No region anywhere: no variables, no profile file, no instance metadata (never the real one in tests).
NO_REGION = {
    "AWS_REGION": "",
    "AWS_DEFAULT_REGION": "",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "BEDROCK_BATCH_EXPORTER_CONFIG": "",
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_with_one_line_naming_the_field(name: str, tmp_path: Path) -> None:
    text, expected = BAD_CONFIGS[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for args in (("check-config", str(path)), ("once", "--config", str(path)), ("run", "--config", str(path))):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert expected in lines[0] and lines[0].startswith("config error: ")
        assert "Traceback" not in result.stderr


def test_missing_config_file_and_bad_flags(tmp_path: Path) -> None:
    result = run_cli("check-config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read config file" in result.stderr
    result = run_cli("run", env=NO_REGION)
    assert result.returncode == 2 and "--config" in result.stderr and "AWS_REGION" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_cli("demo", "--log-format", "xml")
    assert result.returncode == 2 and "--log-format" in result.stderr


def test_check_config_accepts_the_example() -> None:
    result = run_cli("check-config", str(Path(__file__).resolve().parents[2] / "config.example.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_config_takes_config_as_the_other_commands_do_and_v_prints_the_version(tmp_path: Path) -> None:
    example = str(Path(__file__).resolve().parents[2] / "config.example.yaml")
    for args in (("check-config", "--config", example), ("check-config", example, "--config", example)):
        result = run_cli(*args)
        assert result.returncode == 0 and "ok" in result.stdout, result.stderr
    other = tmp_path / "other.yaml"
    other.write_text("targets: [{regions: [us-east-1]}]\n")
    two = run_cli("check-config", example, "--config", str(other))
    assert two.returncode == 2 and "two files" in two.stderr and "Traceback" not in two.stderr
    none = run_cli("check-config")
    assert none.returncode == 2 and "check-config needs a file" in none.stderr
    short, long = run_cli("-V"), run_cli("--version")
    assert short.returncode == long.returncode == 0
    assert short.stdout == long.stdout and short.stdout.startswith("bedrock-batch-exporter ")


def test_a_misspelt_region_stops_run_before_any_client_is_made(tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("targets: [{regions: [us-esat-1]}]\n")
    for command in ("check-config", "run", "doctor"):
        result = run_cli(command, "--config", str(config))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "targets[0].regions[0]: 'us-esat-1' is not a region" in result.stderr and "us-east-1" in result.stderr
        assert "Traceback" not in result.stderr and "amazonaws.com" not in result.stderr + result.stdout


def test_schema_command_prints_json_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0 and '"targets"' in result.stdout


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _body(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def test_run_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "c.yaml"
    # an unreachable endpoint: calls fail fast, the daemon keeps serving
    config.write_text(
        "aws: {max_attempts: 1, connect_timeout: 1s}\n"
        "targets:\n  - endpoint_url: http://127.0.0.1:9\n    regions: [us-east-1]\n    account_id: '000000000000'\n"
    )
    proc = _start(["run", "--config", str(config), "--listen-address", f"127.0.0.1:{port}", "--log-format", "json"])
    try:
        wait_for(lambda: "bedrock_batch_exporter_up" in _body(f"http://127.0.0.1:{port}/metrics"), timeout=20)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        assert time.monotonic() - started < 2.0
        assert proc.returncode == 0
        stderr = proc.stderr.read() if proc.stderr else ""
        assert "Traceback" not in stderr
        assert '"level": "info"' in stderr  # --log-format json
    finally:
        proc.kill()


def test_run_refuses_a_taken_port(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("targets:\n  - regions: [us-east-1]\n    account_id: '000000000000'\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli("run", "--config", str(config), "--listen-address", f"127.0.0.1:{port}", timeout=20)
    assert result.returncode == 2
    assert "cannot listen on" in result.stderr and "Traceback" not in result.stderr


def _demo_values(url: str) -> dict[tuple[str, str, str], float]:
    values = {}
    for family in text_string_to_metric_families(_body(url)):
        for s in family.samples:
            if s.name.startswith("aws_bedrock_batch_"):
                values[(s.name, s.labels["region"], s.labels["dimension_ModelId"])] = s.value
            elif s.name.startswith("bedrock_batch_job"):
                values[(s.name, s.labels["region"], s.labels.get("job_name") or s.labels["status"])] = s.value
    return values


def test_demo_serves_live_changing_bedrock_metrics() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = _start(["demo", "--listen-address", f"127.0.0.1:{port}", "--duration", "120"])
    try:

        def cloudwatch_models(values: dict[tuple[str, str, str], float]) -> set[str]:
            return {k[2] for k in values if k[0].startswith("aws_")}

        first = wait_for(lambda: len(cloudwatch_models(v := _demo_values(url))) >= 5 and v, timeout=30)
        models = cloudwatch_models(first)
        assert {"anthropic.claude-3-5-sonnet-20240620-v1:0", "amazon.nova-pro-v1:0"} <= models
        assert {k[1] for k in first if k[0].startswith("aws_")} == {"us-east-1", "us-west-2"}
        assert any("tokens_pending" in k[0] and k[2].startswith("anthropic.") for k in first)
        assert not any("tokens_pending" in k[0] and not k[2].startswith("anthropic.") for k in first)
        pending = {k: v for k, v in first.items() if "records_pending_processing_maximum" in k[0]}
        assert all(v > 0 for v in pending.values())
        wait_for(lambda: any(_demo_values(url).get(k) != v for k, v in pending.items()), timeout=30, interval=1)
        # the simulated job API is polled too: jobs by status, and per-job progress that moves
        now = _demo_values(url)
        assert sum(v for k, v in now.items() if k[0] == "bedrock_batch_jobs" and k[2] == "InProgress") >= 3
        progress = {k: v for k, v in now.items() if k[0] == "bedrock_batch_job_processed_records"}
        assert progress
        wait_for(lambda: any(_demo_values(url).get(k) != v for k, v in progress.items()), timeout=20, interval=1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        if proc.stderr:
            assert "Traceback" not in proc.stderr.read()


def test_python_m_and_console_script_agree() -> None:
    script = Path(sys.executable).with_name("bedrock-batch-exporter")
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False, env=os.environ)
    assert out.returncode == 0 and out.stdout.startswith("bedrock-batch-exporter ")


def test_global_flags_work_before_and_after_the_subcommand(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("targets: [{endpoint_url: 'http://127.0.0.1:9', regions: [us-east-1]}]\n")
    env = {**NO_REGION, "AWS_REGION": "us-east-1"}  # zero config logs one info line first
    for args in (["--log-format", "json", "plan", "--offline"], ["plan", "--offline", "--log-format", "json"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stderr.splitlines()[0])["message"].startswith("no config file"), args
    for args in (["--log-level", "warning", "plan", "--offline"], ["plan", "--offline", "--log-level", "warning"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 0 and "no config file" not in result.stderr, args
    result = run_cli(
        "--log-level", "debug", "--log-format", "json", "plan", "--offline", "--log-format", "text", env=env
    )
    assert result.stderr.startswith("20") and " INFO " in result.stderr  # the subcommand's flag wins


CHECKED_AT_START = {
    "port out of range": ("server: {listen_address: '0.0.0.0:99999'}\n", "server.listen_address: port 99999"),
    "missing web config": (
        "server: {web_config_file: /nonexistent/web.yml}\n",
        "server.web_config_file: /nonexistent/web.yml: cannot read web config file",
    ),
}


@pytest.mark.parametrize("name", sorted(CHECKED_AT_START))
def test_check_config_makes_the_checks_run_makes(name: str, tmp_path: Path) -> None:
    head, expected = CHECKED_AT_START[name]
    config = tmp_path / "c.yaml"
    config.write_text(
        head + "targets: [{endpoint_url: 'http://127.0.0.1:9', regions: [us-east-1], account_id: '000000000000'}]\n"
    )
    for args in (("check-config", str(config)), ("run", "--config", str(config))):
        result = run_cli(*args, timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines == [f"config error: {expected}"] or (len(lines) == 1 and expected in lines[0]), lines
        assert "Traceback" not in result.stderr


def test_preflight_refuses_grpc_without_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter import preflight as module
    from exporter.config import load_config_text

    config = load_config_text("mode: otlp\notlp: {protocol: grpc}\ntargets: [{regions: [us-east-1]}]\n")
    monkeypatch.setattr(module, "GRPC_PACKAGE", "opentelemetry.exporter.otlp.proto.no_such_package")
    assert [p.split(":")[0] for p in module.preflight(config)] == ["otlp.protocol"]
    monkeypatch.setattr(module, "GRPC_PACKAGE", "json")
    assert module.preflight(config) == []


def test_zero_config_once_polls_the_region_found(fresh_aws: SimulatedAws) -> None:
    put_values(fresh_aws, {("NumberOfRecordsPendingProcessing", "zero-config-model"): 3.0}, region="us-west-2")
    start_job(fresh_aws, region="us-west-2")
    env = {**NO_REGION, "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": fresh_aws.url}
    fresh_aws.reset_counts()
    result = run_cli("once", env=env)
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert "no config file" in first and "us-west-2 (region from AWS_REGION)" in first and "jobs on" in first
    assert fresh_aws.count("ListModelInvocationJobs", "us-west-2") == 1
    assert fresh_aws.count("ListMetrics", "us-east-1") == 0 and fresh_aws.count("ListMetrics", "us-west-2") == 1
    lines = [line for line in result.stdout.splitlines() if 'dimension_ModelId="zero-config-model"' in line]
    assert lines and all('region="us-west-2"' in line for line in lines)


def test_the_config_variable_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("targets:\n  - regions: [us-east-1]\n    regoins: [x]\n")
    result = run_cli("once", env={**NO_REGION, "AWS_REGION": "us-east-1", "BEDROCK_BATCH_EXPORTER_CONFIG": str(config)})
    assert result.returncode == 2 and result.stderr.strip() == "config error: targets[0].regoins: unknown key"
