"""`doctor` against the simulated AWS behind the fault proxy: each denied operation is named with its IAM action."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from exporter.demo.server import SimulatedAws
from exporter.doctor import IAM_ACTIONS
from tests.conftest import put_values, run_cli, start_job
from tests.iam_check import policy_actions
from tests.integration.fault_proxy import ERRORS, Fault, FaultProxy

ROLE_ARN = "arn:aws:iam::111111111111:role/bedrock-batch-exporter-reader"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")
# Query-protocol (STS) error codes and statuses for the proxy's error kinds (STS API reference, "Common Errors")
_QUERY_ERRORS = {"access_denied": (403, "AccessDenied"), "throttle": (400, "Throttling")}


class QueryAwareFaultProxy(FaultProxy):
    """The fault proxy, also able to fault STS (query protocol: the operation is the form's Action, errors are XML).

    The shared proxy reads the operation from X-Amz-Target or the path only; see the report to the lead.
    """

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        if not handler.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            super()._handle(handler)
            return
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        scope = _SCOPE.search(handler.headers.get("Authorization", ""))
        fault = self._match(action, scope.group(1) if scope else "")
        if fault is None or fault.kind not in _QUERY_ERRORS:
            self._reply(handler, *self._forward(handler, body))
            return
        status, code = _QUERY_ERRORS[fault.kind]
        xml = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>injected {fault.kind}</Message></Error>"
            "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        ).encode()
        self._reply(handler, status, {"Content-Type": "text/xml"}, xml)


@pytest.fixture
def proxy(fresh_aws: SimulatedAws) -> Iterator[QueryAwareFaultProxy]:
    server = QueryAwareFaultProxy(fresh_aws.url).start()
    yield server
    server.stop()


def write_config(tmp_path: Path, endpoint: str, role: bool = True) -> Path:
    role_line = f"    role_arn: {ROLE_ARN}\n" if role else "    account_id: '000000000000'\n"
    path = tmp_path / "config.yaml"
    path.write_text(
        "aws: {max_attempts: 1, connect_timeout: 1s, read_timeout: 5s}\njobs: {tag_labels: [team]}\n"
        f"targets:\n  - name: main\n    endpoint_url: {endpoint}\n    regions: [us-east-1]\n{role_line}"
    )
    return path


def seed(aws: SimulatedAws) -> None:
    put_values(aws, {("NumberOfRecordsPendingProcessing", "anthropic.claude-3-haiku-20240307-v1:0"): 5.0})
    start_job(aws)


def test_all_allowed_exits_0_and_reports_the_data(fresh_aws: SimulatedAws, proxy: FaultProxy, tmp_path: Path) -> None:
    seed(fresh_aws)
    result = run_cli("doctor", "--config", str(write_config(tmp_path, proxy.url)))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "main / us-east-1"
    names = [line.split()[1].rstrip(":") for line in lines[1:-1]]
    assert names == [
        "credentials",
        "identity",
        "assume-role",
        "cloudwatch:ListMetrics",
        "cloudwatch:GetMetricData",
        "bedrock:ListModelInvocationJobs",
        "bedrock:ListTagsForResource",
        "servicequotas:ListAWSDefaultServiceQuotas",
        "servicequotas:ListServiceQuotas",
        "bedrock:ListFoundationModels",
        "batch",  # batch quotas
        "data",
    ]
    assert "found in environment variables" in lines[1] and "botocore: env" in lines[1]
    # the simulated catalogue (exporter.demo.quotas): 6 models with a quota, one legacy model's quota matches none
    quotas = next(line for line in lines if "batch quotas:" in line)
    assert "6 model(s) with a concurrent-job quota" in quotas and "base model for Claude Instant" in quotas
    assert "assumed-role" in lines[3] and ROLE_ARN in lines[3]
    # the role belongs to another (empty) account: moto keeps data per account, as CloudWatch does
    assert "no AWS/Bedrock/Batch metrics here in the last 3 hours" in lines[-2]
    assert "FAIL" not in result.stdout and "Traceback" not in result.stderr
    assert proxy.count("ListModelInvocationJobs") == 1 and proxy.count("GetMetricData") == 1
    own = run_cli("doctor", "--config", str(write_config(tmp_path, proxy.url, role=False)))
    assert own.returncode == 0, own.stdout
    assert "not configured" in own.stdout and "AWS/Bedrock/Batch has 1 series here" in own.stdout
    assert "anthropic.claude-3-haiku-20240307-v1:0" in own.stdout


# GetObject (job manifests, opt-in) is denied by an S3 front in tests/integration/test_manifest_reader.py: the fault
# proxy speaks the JSON and query protocols, not S3's REST-XML errors.
@pytest.mark.parametrize("operation", sorted(set(IAM_ACTIONS) - {"GetObject"}))
def test_a_denied_operation_is_named_with_its_iam_action(
    operation: str, fresh_aws: SimulatedAws, proxy: FaultProxy, tmp_path: Path
) -> None:
    seed(fresh_aws)
    proxy.set(Fault("access_denied", operation=operation))
    result = run_cli("doctor", "--config", str(write_config(tmp_path, proxy.url)))
    assert result.returncode == 1, result.stdout
    failed = [line for line in result.stdout.splitlines() if line.strip().startswith("FAIL")]
    assert len(failed) == 1, result.stdout
    action = IAM_ACTIONS[operation]
    assert f"{operation}: access denied" in failed[0] and f"allow the IAM action {action}" in failed[0]
    assert action in policy_actions()  # the advice matches deploy/iam/policy.json
    assert proxy.injected[(operation, "access_denied")] >= 1
    assert "Traceback" not in result.stderr


def test_json_output_is_one_document_with_every_check_and_the_same_exit(
    fresh_aws: SimulatedAws, proxy: FaultProxy, tmp_path: Path
) -> None:
    seed(fresh_aws)
    config = str(write_config(tmp_path, proxy.url))
    text = run_cli("doctor", "--config", config)
    proxy.set(Fault("access_denied", operation="GetMetricData"))
    denied = run_cli("doctor", "--config", config, "--output", "json")
    assert denied.returncode == 1, denied.stdout + denied.stderr
    document = json.loads(denied.stdout)  # the whole of stdout is one JSON document
    assert document["schema_version"] == 1 and document["ok"] is False and document["failures"] == 1
    checks = document["checks"]
    names = [line.split()[1].rstrip(":") for line in text.stdout.splitlines()[1:-1]]
    assert [c["name"].split()[0] for c in checks] == names  # "cloudwatch:ListMetrics (NS)": the first word
    assert {(c["target"], c["region"]) for c in checks} == {("main", "us-east-1")}
    (failed,) = [c for c in checks if c["status"] == "FAIL"]
    assert (
        failed["name"] == "cloudwatch:GetMetricData"
        and "allow the IAM action cloudwatch:GetMetricData" in failed["detail"]
    )
    proxy.set()
    allowed = run_cli("doctor", "--config", config, "--output", "json")
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["ok"] is True


def test_iam_actions_are_the_policys_own() -> None:
    assert set(IAM_ACTIONS.values()) == policy_actions()


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Fault("throttle", operation="GetMetricData"), "GetMetricData: throttled"),
        (Fault("expired_token", operation="ListMetrics"), "ListMetrics: credentials expired"),
    ],
)
def test_causes_in_the_users_words(
    fault: Fault, words: str, fresh_aws: SimulatedAws, proxy: FaultProxy, tmp_path: Path
) -> None:
    assert fault.kind in ERRORS
    proxy.set(fault)
    result = run_cli("doctor", "--config", str(write_config(tmp_path, proxy.url, role=False)))
    assert result.returncode == 1 and words in result.stdout, result.stdout


def test_unreachable_endpoint(tmp_path: Path) -> None:
    result = run_cli("doctor", "--config", str(write_config(tmp_path, "http://127.0.0.1:9", False)))
    assert result.returncode == 1
    assert "endpoint unreachable: http://127.0.0.1:9" in result.stdout


def test_credentials_in_an_endpoint_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    result = run_cli("doctor", "--config", str(write_config(tmp_path, "http://user:pw-1234@127.0.0.1:9", False)))
    assert result.returncode == 2 and "endpoint_url" in result.stderr
    assert "pw-1234" not in result.stdout + result.stderr


def _env_without_credentials() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def test_no_credentials(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "doctor", "--config", str(write_config(tmp_path, "http://127.0.0.1:9"))],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env_without_credentials(),
        check=False,
    )
    assert result.returncode == 1 and "no credentials found" in result.stdout and "Traceback" not in result.stderr


def test_zero_config_doctor_checks_the_region_of_aws_region(fresh_aws: SimulatedAws) -> None:
    seed(fresh_aws)
    env = {
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "eu-west-1",  # AWS_REGION comes first, as in the AWS CLI and the newer SDKs
        "AWS_ENDPOINT_URL": fresh_aws.url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "BEDROCK_BATCH_EXPORTER_CONFIG": "",
    }
    result = run_cli("doctor", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if " / " in line] == ["default / us-east-1"]
    first = result.stderr.splitlines()[0]
    assert "no config file" in first and "us-east-1" in first and "AWS_REGION" in first


def test_doctor_and_plan_never_print_a_secret(fresh_aws: SimulatedAws, proxy: FaultProxy, tmp_path: Path) -> None:
    secrets = {"AWS_SECRET_ACCESS_KEY": "doctor-secret-7c6b5a49", "AWS_SESSION_TOKEN": "doctor-token-3e2d1c0b"}
    seed(fresh_aws)
    config = str(write_config(tmp_path, proxy.url))
    seen = []
    for args in (["doctor"], ["plan"], ["plan", "--output", "json"], ["--log-level", "debug", "doctor"]):
        result = run_cli(*args, "--config", config, env=secrets)
        seen += [result.stdout, result.stderr]
    proxy.set(Fault("access_denied", operation="AssumeRole"))
    result = run_cli("doctor", "--config", config, "--log-level", "debug", env=secrets)
    seen += [result.stdout, result.stderr]
    assert json.loads(seen[4])["schema_version"] == 1
    for secret in secrets.values():
        assert not any(secret in text for text in seen)


def test_with_job_cost_on_doctor_reads_one_manifest(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=fresh_aws.url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    client.create_bucket(Bucket="doctor-output")
    job = fresh_aws.jobs.submit(
        "doctor-job", "amazon.nova-pro-v1:0", 10, "us-east-1", output_uri="s3://doctor-output/o/"
    )
    fresh_aws.jobs.update(str(job["jobArn"]), status="Completed")
    key = f"o/{str(job['jobArn']).rsplit('/', 1)[-1]}/manifest.json.out"
    client.put_object(Bucket="doctor-output", Key=key, Body=b'{"inputTokenCount": 42, "outputTokenCount": 7}')
    path = write_config(tmp_path, fresh_aws.url, role=False)
    path.write_text(
        path.read_text().replace("jobs: {tag_labels: [team]}", "jobs: {tag_labels: [team], read_manifests: true}")
    )
    result = run_cli("doctor", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3:GetObject (job manifests)" in result.stdout and "42 input tokens" in result.stdout
