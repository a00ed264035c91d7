"""Bedrock control-plane calls: ListModelInvocationJobs, paginated, with answer checking."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.aws.errors import BadAnswerError

log = logging.getLogger(__name__)

NON_TERMINAL = ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")
TERMINAL = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
STATUSES = NON_TERMINAL + TERMINAL
MAX_JOBS = 100_000  # a bound on one listing; far above Bedrock's quotas on concurrent and recent jobs


@dataclass(frozen=True)
class Job:
    """The parts of a ModelInvocationJobSummary the exporter uses; times are epoch seconds."""

    arn: str
    name: str
    model_id: str
    status: str
    invocation_type: str
    submit_time: float
    end_time: float | None
    expiration_time: float | None
    total_records: float | None
    processed_records: float | None
    succeeded_records: float | None
    failed_records: float | None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


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
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"not a timestamp: {value!r}")


def _count(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a count: {value!r}")
    return float(value)


def parse_job(summary: Mapping[str, Any]) -> Job | None:
    """A Job from one summary, or None (logged) when required fields are missing or malformed."""
    try:
        status = str(summary["status"])
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        submit = _time(summary["submitTime"])
        if submit is None:
            raise ValueError("submitTime is empty")
        return Job(
            arn=str(summary["jobArn"]),
            name=str(summary.get("jobName", "")),
            model_id=str(summary["modelId"]),
            status=status,
            invocation_type=str(summary.get("modelInvocationType", "")),
            submit_time=submit,
            end_time=_time(summary.get("endTime")),
            expiration_time=_time(summary.get("jobExpirationTime")),
            total_records=_count(summary.get("totalRecordCount")),
            processed_records=_count(summary.get("processedRecordCount")),
            succeeded_records=_count(summary.get("successRecordCount")),
            failed_records=_count(summary.get("errorRecordCount")),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        log.warning("skipping a malformed job summary: %s", exc)
        return None
