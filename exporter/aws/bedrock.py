"""Bedrock control-plane calls: ListModelInvocationJobs, paginated, with answer checking (fail open on the unknown)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from exporter.aws.errors import BadAnswerError
from exporter.model import Job

log = logging.getLogger(__name__)

MAX_JOBS = 100_000  # a bound on one listing; far above Bedrock's quotas on concurrent and recent jobs


def list_jobs(client: Any, submitted_after: float, page_size: int) -> list[Job]:
    """Every job submitted after `submitted_after`, following nextToken through botocore's paginator."""
    paginator = client.get_paginator("list_model_invocation_jobs")
    pages = paginator.paginate(
        submitTimeAfter=datetime.fromtimestamp(submitted_after, UTC),
        sortBy="CreationTime",
        sortOrder="Descending",
        PaginationConfig={"PageSize": page_size, "MaxItems": MAX_JOBS},
    )
    jobs: dict[str, Job] = {}
    for page in pages:
        summaries = page.get("invocationJobSummaries", [])
        if not isinstance(summaries, list):
            raise BadAnswerError("ListModelInvocationJobs answer has no invocationJobSummaries list")
        for summary in summaries:
            job = parse_job(summary)
            if job is not None:
                jobs[job.arn] = job  # a job that moved between pages is counted once
    return list(jobs.values())


def _time(value: Any) -> float | None:
    """An optional timestamp: absent or unreadable is None (an optional field never hides the job)."""
    if isinstance(value, datetime):
        try:
            return value.timestamp()
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _count(value: Any) -> float | None:
    """A record count, or None when absent or not a count a float represents exactly (never a rounded number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    if value > 2**53 or (isinstance(value, float) and not value.is_integer()):
        return None
    return float(value)


def _name(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_job(summary: Any) -> Job | None:
    """A Job from one summary, or None (logged) when a required member (jobArn, modelId, status, submitTime) is
    missing or malformed. The status is kept raw, known or not; unreadable optional members become absent."""
    if not isinstance(summary, Mapping):
        log.warning("skipping a job summary that is not an object")
        return None
    arn, model, status = summary.get("jobArn"), summary.get("modelId"), summary.get("status")
    submit = _time(summary.get("submitTime"))
    missing = [
        name
        for name, value in (("jobArn", arn), ("modelId", model), ("status", status), ("submitTime", submit))
        if value is None or value == "" or (name != "submitTime" and not isinstance(value, str))
    ]
    if missing:
        log.warning("skipping a job summary without %s", ", ".join(missing))
        return None
    assert isinstance(arn, str) and isinstance(model, str) and isinstance(status, str) and submit is not None
    return Job(
        arn=arn,
        name=_name(summary.get("jobName")),
        model_id=model,
        status=status,
        invocation_type=_name(summary.get("modelInvocationType")),
        submit_time=submit,
        end_time=_time(summary.get("endTime")),
        expiration_time=_time(summary.get("jobExpirationTime")),
        total_records=_count(summary.get("totalRecordCount")),
        processed_records=_count(summary.get("processedRecordCount")),
        succeeded_records=_count(summary.get("successRecordCount")),
        failed_records=_count(summary.get("errorRecordCount")),
        last_modified_time=_time(summary.get("lastModifiedTime")),
        **_output(summary.get("outputDataConfig")),
    )


def _output(config: Any) -> dict[str, str | None]:
    """`outputDataConfig.s3OutputDataConfig` (a union in botocore's model): where the job writes its results."""
    s3 = config.get("s3OutputDataConfig") if isinstance(config, Mapping) else None
    if not isinstance(s3, Mapping):
        return {}
    uri, owner = s3.get("s3Uri"), s3.get("s3BucketOwner")
    return {
        "output_s3_uri": uri if isinstance(uri, str) and uri.startswith("s3://") else None,
        "output_bucket_owner": owner if isinstance(owner, str) and owner else None,
    }
