"""Exact tokens per finished job from Bedrock's own output manifest (`manifest.json.out`), read once per job.

Format (Bedrock user guide, "View the results of a batch inference job",
https://docs.aws.amazon.com/bedrock/latest/userguide/batch-inference-results.html): one JSON object with the numbers
totalRecordCount, processedRecordCount, successRecordCount, errorRecordCount, inputTokenCount, outputTokenCount.
Layout (assumed, docs/job-cost.md): `<outputDataConfig.s3OutputDataConfig.s3Uri>/<job ID>/manifest.json.out`, where
the job ID is the last part of the job ARN. That page lists the files but not their folder; the job-ID folder is
what Bedrock writes in practice and what public code reading these files expects.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from exporter import errors
from exporter.aws.s3 import ObjectTooLargeError, read_manifest
from exporter.model import Job, JobUsage

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json.out"
# Largest count accepted: every integer up to 2**53 is exact as the float64 every sink carries.
MAX_COUNT = 2**53 - 1
# botocore's bedrock model, shape S3Uri (Smithy patterns are unanchored; the whole URI must match here).
_S3_URI = re.compile(r"s3://([a-z0-9][-.a-z0-9]{1,61}[a-z0-9])((?:/[-!_*'().a-z0-9A-Z]+)*)/?")
_JOB_ID = re.compile(r"[A-Za-z0-9]{1,128}")  # ModelInvocationJobArn ends in [a-z0-9]{12}; a longer ID still reads
_ACCOUNT = re.compile(r"[0-9]{12}")  # shape AccountId
_COUNT_FIELDS = {
    "inputTokenCount": "input_tokens",
    "outputTokenCount": "output_tokens",
    "processedRecordCount": "records",
    "successRecordCount": "succeeded_records",
    "errorRecordCount": "failed_records",
}
_REQUIRED = ("inputTokenCount", "outputTokenCount")

# Read outcomes (the `outcome` label of the reads counter).
OK = "ok"
ACCESS_DENIED = "access_denied"
NOT_FOUND = "not_found"
KMS_DENIED = "kms_denied"
MALFORMED = "malformed"
TOO_LARGE = "too_large"
ERROR = "error"
FINAL_OUTCOMES = (MALFORMED, TOO_LARGE)  # the object exists and is unusable: reading it again gives the same


class MalformedManifestError(errors.BadAnswerError):
    """The manifest is not the documented JSON object of non-negative integer counts."""


class ManifestCounters(Protocol):
    """Where the reader counts what happened (the exporter's self-metrics implement it)."""

    def manifest_read(self, outcome: str) -> None:
        """One GetObject of a manifest finished with `outcome` (one of the outcomes above)."""

    def manifest_missing(self) -> None:
        """A finished job was given up: no manifest will be exported for it (counted once per job)."""


@dataclass(frozen=True)
class RetrySchedule:
    """When to read again after a failed read: first_retry, doubling up to max_interval, until give_up_after."""

    first_retry: float = 60.0
    max_interval: float = 3600.0
    give_up_after: float = 86400.0  # seconds after the job ended (or was first seen ended)

    def next_attempt(self, last_attempt: float, attempts: int) -> float:
        """When attempt number `attempts + 1` is due, `attempts` (>= 1) having been made, the last at last_attempt."""
        return last_attempt + min(self.first_retry * 2.0 ** min(attempts - 1, 62), self.max_interval)

    def given_up(self, ended: float, now: float) -> bool:
        return now - ended > self.give_up_after


def manifest_location(output_s3_uri: str, job_id: str) -> tuple[str, str]:
    """(bucket, key) of a job's manifest under its output URI; ValueError when either part is unusable."""
    match = _S3_URI.fullmatch(output_s3_uri)
    if match is None or len(output_s3_uri) > 1024:
        raise ValueError(f"output location {output_s3_uri[:200]!r} is not an S3 URI Bedrock accepts")
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"job ID {job_id[:200]!r} cannot name an S3 folder")
    prefix = match.group(2).strip("/")
    key = f"{prefix}/{job_id}/{MANIFEST_NAME}" if prefix else f"{job_id}/{MANIFEST_NAME}"
    return match.group(1), key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise MalformedManifestError("manifest names a field twice")
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise MalformedManifestError(f"manifest holds {name}, not a count")


def parse_manifest(data: bytes, arn: str) -> JobUsage:
    """The usage a manifest states for job `arn`; MalformedManifestError for anything but the documented object."""
    try:
        text = data.decode("utf-8")
        document = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except MalformedManifestError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSON, or an int of > 4300 digits
        raise MalformedManifestError(f"manifest is not JSON: {type(exc).__name__}") from None
    if not isinstance(document, dict):
        raise MalformedManifestError(f"manifest is a JSON {type(document).__name__}, not an object")
    missing = [name for name in _REQUIRED if name not in document]
    if missing:
        raise MalformedManifestError(f"manifest lacks {', '.join(missing)}")
    counts: dict[str, int] = {}
    for name, field in _COUNT_FIELDS.items():
        if name not in document:
            continue  # only the token counts are needed; the record counts are extra
        value = document[name]
        # bool is an int in Python, and 12.0 is a float in JSON: both refused, as are strings and nulls.
        if type(value) is not int or not 0 <= value <= MAX_COUNT:
            raise MalformedManifestError(f"manifest field {name} is not a count: {str(value)[:40]!r}")
        counts[field] = value
    return JobUsage(arn=arn, **counts)


def read_outcome(exc: BaseException) -> str:
    """The reads-counter outcome of a failed read."""
    if isinstance(exc, ObjectTooLargeError):
        return TOO_LARGE
    if isinstance(exc, MalformedManifestError):
        return MALFORMED
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = str(error.get("Message", "")).lower()
        # S3's error codes for keys it cannot use start with "KMS." (e.g. KMS.DisabledException); a role without
        # kms:Decrypt on the bucket's key gets AccessDenied naming kms:Decrypt in the message.
        if code.startswith("KMS.") or (errors.classify(exc) == errors.ACCESS_DENIED and "kms" in message):
            return KMS_DENIED
        if code in ("NoSuchKey", "NoSuchBucket") or status == 404:
            return NOT_FOUND
        if errors.classify(exc) == errors.ACCESS_DENIED:
            return ACCESS_DENIED
    return ERROR


@dataclass
class _Entry:
    """What the reader knows of one finished job."""

    base: float  # when the job ended (or was first seen ended): the give-up clock starts here
    attempts: int = 0
    due: float = 0.0
    in_flight: bool = False
    usage: JobUsage | None = None
    gone: bool = False  # given up: counted as missing once, never read again


class ManifestReader:
    """Reads each finished job's manifest once, in the background, with bounded concurrency and backoff.

    `update` never blocks on S3: it schedules due reads and returns the usages known so far. The S3 client is asked
    of `s3_client` only when a read is first scheduled (so no client exists while no finished job does).
    """

    def __init__(
        self,
        s3_client: Callable[[], Any],
        counters: ManifestCounters,
        *,
        max_concurrency: int = 4,
        schedule: RetrySchedule = RetrySchedule(),
        max_bytes: int = 64 * 1024,
    ) -> None:
        if max_concurrency < 1 or max_bytes < 1:
            raise ValueError("max_concurrency and max_bytes must be at least 1")
        self._s3_client = s3_client
        self._counters = counters
        self._max_concurrency = max_concurrency
        self._schedule = schedule
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._futures: set[Future[None]] = set()
        self._pool: ThreadPoolExecutor | None = None  # created with the first read
        self._closed = False

    def update(self, jobs: Sequence[Job], now: float) -> tuple[JobUsage, ...]:
        """Schedule the reads due at `now` for these (retained) jobs, forget the others; the usages read so far."""
        finished = {job.arn: job for job in jobs if job.finished}
        to_read: list[tuple[Job, _Entry]] = []
        with self._lock:
            for arn in [a for a in self._entries if a not in finished]:
                # Past retention (or no longer finished): an in-flight read's answer is dropped when it returns; a
                # job leaving unread is given up, so `missing` counts it once even when retention < give_up_after.
                gone = self._entries.pop(arn)
                if gone.usage is None and not gone.gone:
                    self._give_up(gone)
            for job in sorted(finished.values(), key=lambda j: (j.ended or now, j.arn)):
                entry = self._entries.get(job.arn)
                if entry is None:
                    entry = self._entries[job.arn] = _Entry(base=job.ended if job.ended is not None else now)
                    if job.processed_records == 0:
                        # Processed nothing (e.g. failed validation): Bedrock writes no output, so there is nothing
                        # to read and nothing missing; fetching would count a certain miss as an AWS error.
                        entry.gone = True
                        continue
                    if not job.output_s3_uri:
                        self._give_up(entry)
                        continue
                if entry.usage is not None or entry.gone or entry.in_flight or entry.due > now:
                    continue
                if entry.attempts and self._schedule.given_up(entry.base, now):
                    self._give_up(entry)
                    continue
                if self._in_flight() >= self._max_concurrency or self._closed:
                    continue  # next update; jobs that ended first go first
                entry.in_flight = True
                entry.attempts += 1
                to_read.append((job, entry))
            usages = tuple(e.usage for _, e in sorted(self._entries.items()) if e.usage is not None)
        for job, entry in to_read:
            self._submit(job, entry, now)
        return usages

    def wait(self, timeout: float) -> bool:
        """Wait until no read is in flight (e.g. for a one-shot run); True if none is left after `timeout` s."""
        with self._lock:
            pending = set(self._futures)
        _, not_done = wait_futures(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        """Stop reading: queued reads are cancelled, running ones finish in the background."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _in_flight(self) -> int:
        return sum(1 for e in self._entries.values() if e.in_flight)

    def _give_up(self, entry: _Entry) -> None:
        entry.gone = True
        self._counters.manifest_missing()

    def _submit(self, job: Job, entry: _Entry, now: float) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="manifest")
            pool = self._pool
        try:
            future = pool.submit(self._read, job, entry, now)
        except RuntimeError:  # closed meanwhile
            with self._lock:
                entry.in_flight = False
            return
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget_future)

    def _forget_future(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _read(self, job: Job, entry: _Entry, attempted: float) -> None:
        """One read (in a pool thread); the outcome is counted and recorded in `entry`."""
        usage: JobUsage | None = None
        try:
            bucket, key = manifest_location(job.output_s3_uri or "", job.job_id)
            owner = job.output_bucket_owner
            if owner is not None and not _ACCOUNT.fullmatch(owner):
                raise ValueError(f"s3BucketOwner {owner[:40]!r} is not an account ID")
        except ValueError as exc:
            log.warning("job %s: its manifest cannot be located (%s); no cost is exported for it", job.arn, exc)
            with self._lock:
                entry.in_flight = False
                if not entry.gone:
                    self._give_up(entry)
            return
        try:
            data = read_manifest(self._s3_client(), bucket, key, owner, self._max_bytes)
            usage = parse_manifest(data, job.arn)
            outcome = OK
        except Exception as exc:  # every failure is counted and retried or given up, never raised into a pool
            outcome = read_outcome(exc)
            log.info("job %s: manifest s3://%s/%s not read: %s", job.arn, bucket, key, errors.describe(exc))
        self._counters.manifest_read(outcome)
        with self._lock:
            entry.in_flight = False
            if usage is not None:
                entry.usage = usage
            elif outcome in FINAL_OUTCOMES:
                self._give_up(entry)
            else:
                entry.due = self._schedule.next_attempt(attempted, entry.attempts)
