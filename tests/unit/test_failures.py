"""Failure reasons (exporter.failures) and the diagnostics parsed from a job summary (exporter.aws.bedrock)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.aws.bedrock import MESSAGE_MAX, parse_job
from exporter.failures import REASONS, failure_reason
from exporter.families import JOB_FAILURE

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        ("Failed", "Access Denied when reading s3://in/x.jsonl", "s3_access"),
        ("Failed", "The role is not authorized to perform s3:GetObject", "s3_access"),
        ("Failed", "KMS key arn:aws:kms:us-east-1:123456789012:key/k is disabled for bucket out", "kms"),
        ("Failed", "Could not reach S3 from subnet subnet-1 with security group sg-1", "network"),
        ("Failed", "Input validation failed: malformed record.", "input_format"),
        ("Failed", "Service quota exceeded for batch inference jobs", "quota"),
        ("Failed", "Internal server error, try again", "internal"),
        ("Failed", "Something nobody wrote down", "other"),
        ("Failed", None, "other"),
        ("PartiallyCompleted", "Access denied", "timeout"),  # the status says it, whatever the message
        ("Expired", None, "timeout"),
        ("Completed", "Access denied", None),
        ("Stopped", "Stopped by request.", None),
        ("InProgress", None, None),
        ("SomeNewStatus", "Access denied", None),  # a status the SDK does not list: not a failure we know of
    ],
)
def test_reason_classes(status: str, message: str | None, reason: str | None) -> None:
    assert failure_reason(status, message) == reason


def test_every_reason_is_named_in_the_help_and_has_a_runbook_section() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    for reason in REASONS:
        assert reason in JOB_FAILURE.help
        assert re.search(rf"^## Job failure {reason}$", runbooks, flags=re.MULTILINE), reason


def _summary(**extra: object) -> dict[str, object]:
    return {
        "jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc",
        "modelId": "m",
        "status": "Failed",
        "submitTime": datetime(2026, 12, 1, tzinfo=UTC),
        **extra,
    }


def test_diagnostics_are_parsed_and_capped() -> None:
    job = parse_job(
        _summary(
            message="<script>alert(1)</script>" + "x" * 1_000_000,
            roleArn="arn:aws:iam::123456789012:role/batch",
            inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://in/records.jsonl"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://out/", "s3EncryptionKeyId": "alias/batch"}},
            vpcConfig={"subnetIds": [f"subnet-{i}" for i in range(40)], "securityGroupIds": ["sg-1", 7]},
        )
    )
    assert job is not None
    assert job.message is not None and len(job.message) == MESSAGE_MAX and job.message.startswith("<script>")
    assert job.role_arn == "arn:aws:iam::123456789012:role/batch"
    assert job.input_s3_uri == "s3://in/records.jsonl" and job.kms_key_id == "alias/batch"
    assert len(job.subnet_ids) == 16 and job.security_group_ids == ("sg-1",)  # capped; a non-string dropped


@pytest.mark.parametrize(
    "extra",
    [
        {"message": 42, "roleArn": [], "inputDataConfig": "s3://x", "vpcConfig": {"subnetIds": "subnet-1"}},
        {"inputDataConfig": {"s3InputDataConfig": None}, "outputDataConfig": {"s3OutputDataConfig": []}},
        {},
    ],
)
def test_broken_or_missing_diagnostics_cost_only_themselves(extra: dict[str, object]) -> None:
    job = parse_job(_summary(**extra))
    assert job is not None and job.status == "Failed"
    assert (job.message, job.role_arn, job.input_s3_uri, job.kms_key_id) == (None, None, None, None)
    assert job.subnet_ids == () and job.security_group_ids == ()
