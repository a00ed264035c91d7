"""Bedrock control-plane calls: ListModelInvocationJobs, paginated, with answer checking (fail open on the unknown)."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from botocore.utils import parse_timestamp

from exporter.aws.parsing import WrappingParserFactory
from exporter.errors import BadAnswerError
from exporter.model import Job

log = logging.getLogger(__name__)

MAX_JOBS = 100_000  # a bound on one listing; far above Bedrock's quotas on concurrent and recent jobs
# Pages per listing (one listing per cycle, so also the cycle's call budget): 100,000 jobs at the 1,000-job maximum
# page size need 100; a nextToken that changes on every page is stopped here and counted as a bad answer.
MAX_PAGES = 200
# A job time outside [EARLIEST_TIME, now + MAX_FUTURE] is malformed: Bedrock batch inference launched in 2023, and a
# job's latest time (jobExpirationTime) is at most the 168-hour timeout after submission.
EARLIEST_TIME = datetime(2023, 1, 1, tzinfo=UTC).timestamp()
MAX_FUTURE = 30 * 86400.0
_TIMES = ("submitTime", "endTime", "jobExpirationTime", "lastModifiedTime")
_LENIENT = "_bedrock_batch_exporter_lenient"


@dataclass
class Listing:
    """One listing: the jobs, the summaries skipped (by (member, reason)), and why it stopped early, if it did."""

    jobs: list[Job]
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    truncated: str | None = None


def list_jobs(client: Any, submitted_after: float, page_size: int) -> list[Job]:
    """Every job submitted after `submitted_after` (see list_jobs_checked)."""
    return list_jobs_checked(client, submitted_after, page_size).jobs


def list_jobs_checked(client: Any, submitted_after: float, page_size: int, now: float | None = None) -> Listing:
    """Every job submitted after `submitted_after`, following nextToken for at most MAX_PAGES pages.

    A malformed summary costs that job only (counted in `rejected`); a token loop or the page cap ends the listing
    with the jobs read so far and `truncated` saying why. Our own loop, not botocore's paginator: the paginator has
    no page cap, and only stops on a token repeated twice in a row.
    """
    lenient_job_listing(client)
    now = time.time() if now is None else now
    kwargs: dict[str, Any] = {
        "submitTimeAfter": datetime.fromtimestamp(submitted_after, UTC),
        "sortBy": "CreationTime",
        "sortOrder": "Descending",
        "maxResults": page_size,
    }
    jobs: dict[str, Job] = {}
    listing = Listing([])
    tokens: set[str] = set()
    for _ in range(MAX_PAGES):
        page = client.list_model_invocation_jobs(**kwargs)
        summaries = page.get("invocationJobSummaries", []) if isinstance(page, dict) else None
        if not isinstance(summaries, list):
            raise BadAnswerError("ListModelInvocationJobs answer has no invocationJobSummaries list")
        for summary in summaries:
            job = parse_job(summary, now, listing.rejected)
            if job is not None:
                jobs[job.arn] = job  # a job that moved between pages is counted once
        token = page.get("nextToken")
        if not token:
            break
        if not isinstance(token, str) or token in tokens:
            listing.truncated = "ListModelInvocationJobs returned a nextToken it had returned before"
            break
        if len(jobs) >= MAX_JOBS:
            listing.truncated = f"ListModelInvocationJobs listed {MAX_JOBS} jobs and still had more"
            break
        tokens.add(token)
        kwargs["nextToken"] = token
    else:
        listing.truncated = f"ListModelInvocationJobs pagination did not end after {MAX_PAGES} pages"
    listing.jobs = list(jobs.values())
    return listing


class _LenientParser:
    """botocore's rest-json parser, except that a 2xx ListModelInvocationJobs answer is decoded by orjson and its
    summaries are handed on raw (ISO 8601 strings for `timestampFormat: iso8601` members, botocore's bedrock model).

    botocore parses the whole page before our code sees it, so one summary with an `endTime` that is not a date
    made the page, and every job of the region, unreadable; parse_job now judges each summary on its own.
    Errors and anything that is not an object with a summaries list stay botocore's.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def parse(self, response: dict[str, Any], shape: Any) -> Any:
        if getattr(shape, "name", None) != "ListModelInvocationJobsResponse" or response.get("status_code", 500) >= 300:
            return self._inner.parse(response, shape)
        try:
            decoded = orjson.loads(response.get("body") or b"{}")
        except (ValueError, TypeError):
            return self._inner.parse(response, shape)
        summaries = decoded.get("invocationJobSummaries", []) if isinstance(decoded, dict) else None
        if not isinstance(summaries, list):
            return self._inner.parse(response, shape)
        parsed = self._inner.parse({**response, "body": b"{}"}, shape)  # ResponseMetadata exactly as botocore's
        parsed["invocationJobSummaries"] = summaries
        if decoded.get("nextToken") is not None:
            parsed["nextToken"] = decoded["nextToken"]
        return parsed


def lenient_job_listing(client: Any) -> None:
    """Give a botocore Bedrock client the per-summary ListModelInvocationJobs parsing (once); other objects are
    left alone."""
    if getattr(client, _LENIENT, False):
        return
    endpoint: Any = getattr(client, "_endpoint", None)
    factory = getattr(endpoint, "_response_parser_factory", None)
    if factory is None:
        return
    endpoint._response_parser_factory = WrappingParserFactory(factory, "rest-json", _LenientParser)
    setattr(client, _LENIENT, True)


class _Malformed(Exception):
    """A summary member present but unusable; the reason is a metric label."""


def _time(value: Any, now: float | None = None) -> float | None:
    """A timestamp (datetime, ISO 8601 text or epoch seconds): None when absent; _Malformed when unreadable or, with
    `now`, outside [EARLIEST_TIME, now + MAX_FUTURE]."""
    if value is None:
        return None
    try:
        if isinstance(value, datetime):
            stamp = value.timestamp()
        elif isinstance(value, str):
            stamp = parse_timestamp(value).timestamp()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            stamp = float(value)
        else:
            raise _Malformed("malformed")
    except (OverflowError, OSError, ValueError, TypeError):
        raise _Malformed("malformed") from None
    if not math.isfinite(stamp):
        raise _Malformed("malformed")
    if now is not None and not EARLIEST_TIME <= stamp <= now + MAX_FUTURE:
        raise _Malformed("out_of_range")
    return stamp


def _count(value: Any) -> float | None:
    """A record count, or None when absent or not a count a float represents exactly (never a rounded number)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    if value > 2**53 or (isinstance(value, float) and not value.is_integer()):
        return None
    return float(value)


def _name(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_job(summary: Any, now: float | None = None, rejected: Counter[tuple[str, str]] | None = None) -> Job | None:
    """A Job from one summary, or None (logged) when a required member (jobArn, modelId, status, submitTime) is
    missing or malformed. The status is kept raw, known or not.

    With `now` (a listing), a time member that is present but unreadable or out of range rejects the job, counted in
    `rejected` by (member, reason); without it, unreadable optional members become absent.
    """
    if not isinstance(summary, Mapping):
        log.warning("skipping a job summary that is not an object")
        if rejected is not None:
            rejected[("", "not_an_object")] += 1
        return None
    times: dict[str, float | None] = {}
    for member in _TIMES:
        try:
            times[member] = _time(summary.get(member), now)
        except _Malformed as exc:
            if now is None and member != "submitTime":
                times[member] = None
                continue
            log.warning("skipping job %.200r: its %s is %s", summary.get("jobArn"), member, exc)
            if rejected is not None:
                rejected[(member, str(exc))] += 1
            return None
    arn, model, status = summary.get("jobArn"), summary.get("modelId"), summary.get("status")
    submit = times["submitTime"]
    missing = [
        name
        for name, value in (("jobArn", arn), ("modelId", model), ("status", status), ("submitTime", submit))
        if value is None or value == "" or (name != "submitTime" and not isinstance(value, str))
    ]
    if missing:
        log.warning("skipping a job summary without %s", ", ".join(missing))
        if rejected is not None:
            rejected[(missing[0], "missing")] += 1
        return None
    assert isinstance(arn, str) and isinstance(model, str) and isinstance(status, str) and submit is not None
    return Job(
        arn=arn,
        name=_name(summary.get("jobName")),
        model_id=model,
        status=status,
        invocation_type=_name(summary.get("modelInvocationType")),
        submit_time=submit,
        end_time=times["endTime"],
        expiration_time=times["jobExpirationTime"],
        total_records=_count(summary.get("totalRecordCount")),
        processed_records=_count(summary.get("processedRecordCount")),
        succeeded_records=_count(summary.get("successRecordCount")),
        failed_records=_count(summary.get("errorRecordCount")),
        last_modified_time=times["lastModifiedTime"],
        **_output(summary.get("outputDataConfig")),
        **_diagnostics(summary),
    )


# botocore's bedrock model: Message and RoleArn at most 2,048 characters, S3Uri 1,024, KmsKeyId 2,048, SubnetIds 16
# and SecurityGroupIds 5 items. Longer values (an answer that breaks the model) are cut to these, never refused: the
# job's counts and status matter more than its diagnostics.
MESSAGE_MAX = 2048
TEXT_MAX = 2048
IDS_MAX = 16


def _text(value: Any, limit: int = TEXT_MAX) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item[:TEXT_MAX] for item in value[:IDS_MAX] if isinstance(item, str) and item)


def _diagnostics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What a failed job's operator checks first: the message, the role, the input, the VPC (the output's KMS key is
    read with the rest of the output, in `_output`)."""
    inputs, vpc = summary.get("inputDataConfig"), summary.get("vpcConfig")
    s3_in = inputs.get("s3InputDataConfig") if isinstance(inputs, Mapping) else None
    vpc = vpc if isinstance(vpc, Mapping) else {}
    return {
        "message": _text(summary.get("message"), MESSAGE_MAX),
        "role_arn": _text(summary.get("roleArn")),
        "input_s3_uri": _text(s3_in.get("s3Uri")) if isinstance(s3_in, Mapping) else None,
        "subnet_ids": _ids(vpc.get("subnetIds")),
        "security_group_ids": _ids(vpc.get("securityGroupIds")),
    }


def _output(config: Any) -> dict[str, Any]:
    """`outputDataConfig.s3OutputDataConfig` (a union in botocore's model): where the job writes its results."""
    s3 = config.get("s3OutputDataConfig") if isinstance(config, Mapping) else None
    if not isinstance(s3, Mapping):
        return {}
    uri, owner = s3.get("s3Uri"), s3.get("s3BucketOwner")
    return {
        "output_s3_uri": uri if isinstance(uri, str) and uri.startswith("s3://") else None,
        "output_bucket_owner": owner if isinstance(owner, str) and owner else None,
        "kms_key_id": _text(s3.get("s3EncryptionKeyId")),
    }
