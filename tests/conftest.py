"""Shared fixtures: a simulated AWS (moto over HTTP on 127.0.0.1) and helpers to poll with deadlines."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, settings

from tests import conformance

# Before any botocore Session exists: every request the suite sends is checked against AWS's model
# (tests/conformance), in this process and, through PYTHONPATH's sitecustomize, in the Python processes tests start.
conformance.install(main=True)
_CONFORMANCE_DIR = tempfile.mkdtemp(prefix="request-conformance-")
os.environ[conformance.REPORT_DIR_ENV] = _CONFORMANCE_DIR
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (os.path.join(os.path.dirname(conformance.__file__), "site"), os.environ.get("PYTHONPATH")) if p
)

from exporter.app import Exporter  # noqa: E402
from exporter.config import load_config_text  # noqa: E402
from exporter.demo.server import SimulatedAws  # noqa: E402

# Fake credentials for moto only; set before any client is made, so no test can reach a real account.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH", "AWS_CONFIG_FILE"):
    os.environ.pop(_name, None)
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

# Property tests are derandomised by default so CI and the README's test command give the same answer on every run;
# `HYPOTHESIS_PROFILE=explore` (or `--hypothesis-profile=explore`) searches new inputs (docs/testing.md).
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    derandomize=False,
    deadline=None,
    max_examples=3000,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_SERVERS: list[SimulatedAws] = []  # for the IAM policy check at the end of the session


@pytest.fixture(scope="session")
def aws() -> Iterator[SimulatedAws]:
    server = SimulatedAws().start()
    _SERVERS.append(server)
    yield server
    server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run on a request AWS's model does not allow (tests/conformance), or on an IAM policy mismatch."""
    _check_request_conformance(session)
    _check_iam_policy(session)


def _check_request_conformance(session: pytest.Session) -> None:
    """Print what the request-conformance hook checked; fail the run if a request broke botocore's input shapes."""
    record = conformance.merged(Path(_CONFORMANCE_DIR))
    shutil.rmtree(_CONFORMANCE_DIR, ignore_errors=True)
    if not record.checked and not record.violations:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for line, violation in conformance.summary(record):
        if reporter is not None:
            reporter.write_line(line, red=violation)
    if record.violations:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _check_iam_policy(session: pytest.Session) -> None:
    """Fail the run if the exporter made an AWS call deploy/iam/policy.json does not allow, or the policy allows
    one the exporter never made (checked when the suites that exercise every call ran)."""
    from tests.iam_check import check_policy

    if not _SERVERS:
        return
    ran = {str(item.path) for item in session.items}
    problems = check_policy(
        [s.exporter_calls for s in _SERVERS],
        full=all(any(path.endswith(name) for path in ran) for name in ("test_once.py", "test_jobs.py")),
        full_optional=any(path.endswith("test_job_cost.py") for path in ran),
    )
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for problem in problems:
            if reporter is not None:
                reporter.write_line(f"IAM policy check: {problem}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def fresh_aws(aws: SimulatedAws) -> Iterator[SimulatedAws]:
    """The shared simulated AWS with moto's state and the call counts cleared."""
    _reset_moto()
    aws.jobs.clear()
    aws.broken_regions.clear()
    aws.links.clear()
    aws.quotas.clear()
    aws.reset_counts()
    aws.delay = 0.0
    yield aws
    aws.delay = 0.0
    aws.broken_regions.clear()
    aws.links.clear()
    aws.quotas.clear()
    aws.jobs.clear()
    _reset_moto()


def _reset_moto() -> None:
    from moto.backends import get_backend

    for region_backends in get_backend("cloudwatch").values():
        for backend in region_backends.values():
            backend.metric_data.clear()
            backend.paged_metric_data.clear()


def cloudwatch(aws: SimulatedAws, region: str = "us-east-1") -> Any:
    return boto3.client("cloudwatch", region_name=region, endpoint_url=aws.url)


def put_values(
    aws: SimulatedAws,
    values: dict[tuple[str, str], float],
    region: str = "us-east-1",
    namespace: str = "AWS/Bedrock/Batch",
    when: datetime | None = None,
) -> None:
    """Publish one datapoint per (metric, ModelId), 500 per call."""
    client = cloudwatch(aws, region)
    stamp = when or datetime.now(UTC)
    data = [
        {"MetricName": metric, "Dimensions": [{"Name": "ModelId", "Value": model}], "Value": value, "Timestamp": stamp}
        for (metric, model), value in values.items()
    ]
    for i in range(0, len(data), 500):
        client.put_metric_data(Namespace=namespace, MetricData=data[i : i + 500])


def put_as_role(aws: SimulatedAws, role_arn: str, metric: str, model: str, value: float, when: datetime) -> None:
    """Publish one datapoint with the role's assumed credentials: moto files it under the role's account."""
    keys = boto3.client("sts", region_name="us-east-1", endpoint_url=aws.url).assume_role(
        RoleArn=role_arn, RoleSessionName="test"
    )["Credentials"]
    boto3.client(
        "cloudwatch",
        region_name="us-east-1",
        endpoint_url=aws.url,
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
    ).put_metric_data(
        Namespace="AWS/Bedrock/Batch",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": "ModelId", "Value": model}],
                "Value": value,
                "Timestamp": when,
            }
        ],
    )


def start_job(aws: SimulatedAws, model: str = "m", region: str = "us-east-1", account_id: str | None = None) -> str:
    """Submit an unfinished batch job to the simulated job API (so job-aware polling reads CloudWatch); its ARN."""
    extra = {"account_id": account_id} if account_id else {}
    job = aws.jobs.submit(f"job-{model}".replace(":", "-").replace(".", "-"), model, 100, region, **extra)
    return str(job["jobArn"])


@pytest.fixture
def exporters() -> Iterator[list[Exporter]]:
    """In-process exporters started by a test (see start_exporter); stopped when it ends."""
    started: list[Exporter] = []
    yield started
    for exporter in started:
        exporter.stop()


def start_exporter(exporters: list[Exporter], text: str, env: dict[str, str] | None = None) -> tuple[Exporter, str]:
    """An in-process exporter serving on a free 127.0.0.1 port; returns it and its URL."""
    exporter = Exporter(load_config_text(text, env=env or {}))
    exporters.append(exporter)
    return exporter, exporter.start("127.0.0.1:0")


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        time.sleep(interval)


FAST_JOBS = "interval: 1s, retention: 10m, lookback: 8d"


def fast_config(
    endpoint: str,
    *,
    targets: str | None = None,
    regions: str = "[us-east-1]",
    account_id: str | None = "000000000000",
    aws: str = "max_attempts: 2, read_timeout: 2s, connect_timeout: 1s",
    jobs: str | None = FAST_JOBS,
    head: str = "",
) -> str:
    """Config text for in-process tests: one Bedrock metric (Maximum), polled every second with 10 s periods.

    `targets` replaces the single target on `endpoint`; `jobs` is the jobs mapping's content (None: disabled);
    `head` goes first (e.g. a server or otlp section).
    """
    if targets is None:
        targets = f"  - endpoint_url: {endpoint}\n    regions: {regions}\n"
        if account_id:
            targets += f'    account_id: "{account_id}"\n'
    return f"""{head}
aws: {{{aws}}}
jobs: {{{jobs if jobs is not None else "enabled: false"}}}
targets:
{targets}
namespaces:
  - namespace: AWS/Bedrock/Batch
    interval: 1s
    period: 10s
    length: 2m
    delay: 0s
    metrics: [{{name: NumberOfRecordsPendingProcessing, statistics: [Maximum]}}]
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """Run `python -m exporter ARGS` as a user would; returns the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def self_signed_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway certificate for localhost and its key, as files in `tmp_path` (for TLS servers of the tests)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file
