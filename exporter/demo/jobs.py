"""A fake of Bedrock's batch inference job API (List/GetModelInvocationJob), driven by botocore's service model.

moto has no such API. `JobStore` holds the jobs, `JobsApp` serves them over restJson1 as a WSGI app (so real
`boto3.client("bedrock", endpoint_url=...)` clients can call it) and `JobSimulator` moves them through their lifecycle.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import copy
import functools
import hashlib
import json
import logging
import random
import re
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from moto.core.models import DEFAULT_ACCOUNT_ID

from exporter.demo.policies import POLICIES

log = logging.getLogger(__name__)

Job = dict[str, Any]
StartResponse = Callable[..., Any]

# moto's default account, so job ARNs agree with the rest of the simulated AWS
DEFAULT_REGION = "us-east-1"
# AWS does not document the default page size; a small one makes clients that forget to paginate visible.
DEFAULT_MAX_RESULTS = 100

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/[a-z0-9-]+/aws4_request")
_JOB_ID_CHARS = string.ascii_lowercase + string.digits
_LIST_PATH = "/model-invocation-jobs"
_GET_PREFIX = "/model-invocation-job/"
_TAGS_PATH = "/listTagsForResource"  # ListTagsForResource: POST, restJson1 body {"resourceARN"} (botocore's model)
_MAX_BODY = 64 << 10
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


@functools.cache
def service_model() -> Any:
    """botocore's `bedrock` service model, loaded once through botocore's data Loader."""
    import botocore.loaders
    import botocore.model

    return botocore.model.ServiceModel(botocore.loaders.create_loader().load_service_model("bedrock", "service-2"))


def summary_shape() -> Any:
    return service_model().shape_for("ModelInvocationJobSummary")


def _statuses() -> tuple[str, ...]:
    """Every job status the SDK's model lists (shape `ModelInvocationJobStatus`), in the model's order."""
    return tuple(service_model().shape_for("ModelInvocationJobStatus").enum)


# Which statuses end a job is domain knowledge, not in the model: AWS's status descriptions (API reference,
# ModelInvocationJobSummary.status: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_ModelInvocationJobSummary.html)
# describe these five as outcomes (completed, partially completed, failed, stopped by a user, timed out before
# starting); AWS does not use the word "terminal". Any other status, including one a newer model adds, is unfinished.
_TERMINAL_BY_DOCS = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
STATUSES = _statuses()
TERMINAL = tuple(s for s in STATUSES if s in _TERMINAL_BY_DOCS)
NON_TERMINAL = tuple(s for s in STATUSES if s not in _TERMINAL_BY_DOCS)
if set(TERMINAL) != set(_TERMINAL_BY_DOCS):  # the SDK dropped or renamed a documented final status: look again
    raise RuntimeError(f"botocore's ModelInvocationJobStatus lacks {sorted(set(_TERMINAL_BY_DOCS) - set(TERMINAL))}")


def _as_datetime(value: float | datetime) -> datetime:
    """A UTC datetime at millisecond precision, as the API reports times, so store and wire agree."""
    stamp = value.astimezone(UTC) if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def _arn_scope(job_arn: str) -> tuple[str, str]:
    """(account, region) of a job ARN."""
    parts = job_arn.split(":")
    if len(parts) < 6 or parts[2] != "bedrock":
        raise KeyError(f"not a Bedrock job ARN: {job_arn!r}")
    return parts[4], parts[3]


class JobStore:
    """Thread-safe model-invocation jobs, as botocore's `ModelInvocationJobSummary` dicts, per (account, region)."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # by ARN, in submission order
        self._tags: dict[str, builtins.list[Any]] = {}  # by ARN: TagList entries as served
        self._rng = random.Random(seed)
        self._throttle = 0

    def submit(
        self,
        job_name: str,
        model_id: str,
        total_records: int,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        now: float | datetime | None = None,
        *,
        timeout_hours: int = 72,
        model_invocation_type: str = "InvokeModel",
        role_arn: str | None = None,
        input_uri: str | None = None,
        output_uri: str | None = None,
        output_bucket_owner: str | None = None,
        client_request_token: str | None = None,
        vpc_config: Mapping[str, builtins.list[str]] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Job:
        """Record a new job in status Submitted and return it; `tags` as CreateModelInvocationJob's `tags` (each key
        and value checked against the model's TagKey and TagValue, at most 200: TagList)."""
        members = summary_shape().members
        errors = _violations("jobName", members["jobName"], job_name)
        tag_shape = service_model().shape_for("Tag").members
        for key, value in (tags or {}).items():
            errors += _violations("tags.key", tag_shape["key"], key) + _violations(
                "tags.value", tag_shape["value"], value
            )
        if tags is not None and len(tags) > 200:
            errors.append("tags: at most 200")
        errors += _violations("timeoutDurationInHours", members["timeoutDurationInHours"], timeout_hours)
        errors += _violations("modelInvocationType", members["modelInvocationType"], model_invocation_type)
        errors += _violations("totalRecordCount", members["totalRecordCount"], total_records)
        if errors:
            raise ValueError("; ".join(errors))
        submitted = _as_datetime(time.time() if now is None else now)
        with self._lock:
            job_id = "".join(self._rng.choices(_JOB_ID_CHARS, k=12))
            job_arn = f"arn:aws:bedrock:{region}:{account_id}:model-invocation-job/{job_id}"
            job: Job = {
                "jobArn": job_arn,
                "jobName": job_name,
                "modelId": model_id,
                "roleArn": role_arn or f"arn:aws:iam::{account_id}:role/BedrockBatchInference",
                "status": "Submitted",
                "submitTime": submitted,
                "lastModifiedTime": submitted,
                "inputDataConfig": {
                    "s3InputDataConfig": {"s3InputFormat": "JSONL", "s3Uri": input_uri or f"s3://batch-{job_id}/in/"}
                },
                "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_uri or f"s3://batch-{job_id}/out/"}},
                "timeoutDurationInHours": timeout_hours,
                "jobExpirationTime": submitted + timedelta(hours=timeout_hours),
                "modelInvocationType": model_invocation_type,
                "totalRecordCount": total_records,
                "processedRecordCount": 0,
                "successRecordCount": 0,
                "errorRecordCount": 0,
            }
            if output_bucket_owner is not None:  # ModelInvocationJobS3OutputDataConfig.s3BucketOwner
                job["outputDataConfig"]["s3OutputDataConfig"]["s3BucketOwner"] = output_bucket_owner
            if client_request_token is not None:
                job["clientRequestToken"] = client_request_token
            if vpc_config is not None:
                job["vpcConfig"] = {k: builtins.list(v) for k, v in vpc_config.items()}
            self._jobs[job_arn] = job
            self._tags[job_arn] = [{"key": k, "value": v} for k, v in (tags or {}).items()]
            return copy.deepcopy(job)

    def set_raw_tags(self, job_arn: str, tags: builtins.list[Any]) -> None:
        """Serve `tags` (any JSON, unchecked) as the job's TagList: for tests of answers AWS would never send."""
        with self._lock:
            self._tags[job_arn] = copy.deepcopy(tags)

    def tags_of(self, resource_arn: str) -> builtins.list[Any] | None:
        """The TagList of a job, or None when no job has that ARN."""
        with self._lock:
            found = self._tags.get(resource_arn)
            return None if found is None else copy.deepcopy(found)

    def update(self, job_arn: str, now: float | datetime | None = None, **fields: Any) -> Job:
        """Set members of a job (None removes one) and stamp lastModifiedTime; raises KeyError for an unknown job."""
        members = summary_shape().members
        unknown = sorted(set(fields) - set(members))
        if unknown:
            raise ValueError(f"not members of ModelInvocationJobSummary: {', '.join(unknown)}")
        if "status" in fields and fields["status"] not in members["status"].enum:
            raise ValueError(f"unknown job status {fields['status']!r}")
        with self._lock:
            job = self._jobs[job_arn]
            job["lastModifiedTime"] = _as_datetime(time.time() if now is None else now)
            for name, value in fields.items():
                if value is None:
                    job.pop(name, None)
                elif members[name].type_name == "timestamp":
                    job[name] = _as_datetime(value)
                else:
                    job[name] = copy.deepcopy(value)
            return copy.deepcopy(job)

    def get(self, identifier: str, region: str = DEFAULT_REGION, account_id: str = DEFAULT_ACCOUNT_ID) -> Job | None:
        """The job with this ARN or job ID (what `jobIdentifier` accepts) in (account, region), or None."""
        arn = identifier
        if not identifier.startswith("arn:"):
            arn = f"arn:aws:bedrock:{region}:{account_id}:model-invocation-job/{identifier}"
        with self._lock:
            job = self._jobs.get(arn)
            if job is None or _arn_scope(arn) != (account_id, region):
                return None
            return copy.deepcopy(job)

    def list(
        self,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        *,
        submit_time_after: datetime | None = None,
        submit_time_before: datetime | None = None,
        status_equals: str | None = None,
        name_contains: str | None = None,
        sort_order: str = "Descending",
    ) -> builtins.list[Job]:
        """Jobs in (account, region) that pass every given filter, sorted by submitTime (then ARN)."""
        with self._lock:
            found = [
                copy.deepcopy(job)
                for arn, job in self._jobs.items()
                if _arn_scope(arn) == (account_id, region)
                and (submit_time_after is None or job["submitTime"] > submit_time_after)
                and (submit_time_before is None or job["submitTime"] < submit_time_before)
                and (status_equals is None or job["status"] == status_equals)
                and (name_contains is None or name_contains in job["jobName"])
            ]
        found.sort(key=_sort_key, reverse=sort_order == "Descending")
        return found

    def all(self) -> builtins.list[Job]:
        """Every job of every account and region, in submission order."""
        with self._lock:
            return [copy.deepcopy(job) for job in self._jobs.values()]

    def prune(self, ended_before: float | datetime) -> int:
        """Forget finished jobs that ended before `ended_before`, so long demos keep flat memory; returns how many."""
        cutoff = _as_datetime(ended_before)
        with self._lock:
            gone = [arn for arn, job in self._jobs.items() if "endTime" in job and job["endTime"] < cutoff]
            for arn in gone:
                del self._jobs[arn]
            return len(gone)

    def clear(self) -> None:
        """Forget every job and pending throttle."""
        with self._lock:
            self._jobs.clear()
            self._tags.clear()
            self._throttle = 0

    def throttle_next(self, n: int) -> None:
        """Answer the next `n` API requests with ThrottlingException."""
        with self._lock:
            self._throttle = max(n, 0)

    def consume_throttle(self) -> bool:
        """True (and one fewer pending) if this request is to be throttled."""
        with self._lock:
            if self._throttle <= 0:
                return False
            self._throttle -= 1
            return True


def _sort_key(job: Job) -> tuple[datetime, str]:
    return job["submitTime"], job["jobArn"]


# --- validation and serialization, both read from the service model -------------------------------------------------


def _violations(name: str, shape: Any, value: Any) -> list[str]:
    """AWS-worded constraint violations of `value` against a scalar shape's traits."""
    meta = shape.metadata
    prefix = f"Value '{value}' at '{name}' failed to satisfy constraint: Member must"
    found = []
    if shape.type_name == "string":
        if getattr(shape, "enum", None) and value not in shape.enum:
            found.append(f"{prefix} satisfy enum value set: [{', '.join(shape.enum)}]")
        if "min" in meta and len(value) < meta["min"]:
            found.append(f"{prefix} have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{prefix} have length less than or equal to {meta['max']}")
        # Smithy patterns are not implicitly anchored, hence search rather than fullmatch.
        if "pattern" in meta and not re.search(meta["pattern"], value):
            found.append(f"{prefix} satisfy regular expression pattern: {meta['pattern']}")
    elif shape.type_name in ("integer", "long"):
        if "min" in meta and value < meta["min"]:
            found.append(f"{prefix} have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            found.append(f"{prefix} have value less than or equal to {meta['max']}")
    return found


def _parse_query(shape: Any, query: Mapping[str, list[str]]) -> tuple[dict[str, Any], list[str]]:
    """The input members carried in the query string, typed, plus the constraint violations found."""
    params: dict[str, Any] = {}
    errors: list[str] = []
    for name, member in shape.members.items():
        wire = member.serialization.get("name", name)
        if member.serialization.get("location") != "querystring" or wire not in query:
            continue
        raw = query[wire][0]
        value: Any = raw
        try:
            if member.type_name in ("integer", "long"):
                value = int(raw)
            elif member.type_name == "timestamp":
                value = _as_datetime(datetime.fromisoformat(raw))
        except ValueError:
            errors.append(
                f"Value '{raw}' at '{wire}' failed to satisfy constraint: Member must be a valid {member.type_name}"
            )
            continue
        errors += _violations(wire, member, value)
        params[name] = value
    return params, errors


def _to_wire(shape: Any, value: Any) -> Any:
    """`value` as restJson1 puts it in a body, following the shape (timestamps per their timestampFormat)."""
    if shape.type_name == "structure":
        return {k: _to_wire(shape.members[k], v) for k, v in value.items() if k in shape.members and v is not None}
    if shape.type_name == "list":
        return [_to_wire(shape.member, v) for v in value]
    if shape.type_name == "timestamp":
        stamp = _as_datetime(value)
        # restJson1 bodies default to epoch seconds; Bedrock's model asks for iso8601 explicitly.
        fmt = shape.serialization.get("timestampFormat", "unixTimestamp")
        if fmt == "iso8601":
            return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if fmt == "rfc822":
            return stamp.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return stamp.timestamp()
    return value


# --- HTTP -------------------------------------------------------------------------------------------------------------


def handles(environ: Mapping[str, Any]) -> bool:
    """Whether a WSGI request is for the batch-inference job API (so a dispatcher can route it to `JobsApp`)."""
    path = str(environ.get("PATH_INFO", ""))
    return path.startswith("/model-invocation-job") or path == _TAGS_PATH


def request_scope(environ: Mapping[str, Any], default_region: str = DEFAULT_REGION) -> tuple[str, str]:
    """(account, region) of a SigV4-signed request; like moto, a 12-digit access key ID names the account."""
    match = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if match is None:
        return DEFAULT_ACCOUNT_ID, default_region
    key, region = match.groups()
    return (key if key.isdigit() and len(key) == 12 else DEFAULT_ACCOUNT_ID), region


class ApiError(Exception):
    """An error answered the restJson1 way: status, `x-amzn-ErrorType` header and a {"message"} body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class JobsApp:
    """WSGI app answering ListModelInvocationJobs and GetModelInvocationJob from a `JobStore`."""

    def __init__(self, store: JobStore, default_region: str = DEFAULT_REGION) -> None:
        self.store = store
        self.default_region = default_region

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, body = self._route(environ)
        except ApiError as exc:
            return _respond(start_response, exc.status, {"message": exc.message}, exc.code)
        except Exception:
            log.exception("fake Bedrock job API failed on %s", environ.get("PATH_INFO"))
            return _respond(start_response, 500, {"message": "internal error in the fake"}, "InternalServerException")
        return _respond(start_response, status, body)

    def _route(self, environ: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        path, method = str(environ.get("PATH_INFO", "")), environ.get("REQUEST_METHOD", "GET")
        if method == "GET" and path.rstrip("/") == _LIST_PATH:
            operation = "ListModelInvocationJobs"
        elif method == "GET" and path.startswith(_GET_PREFIX) and len(path) > len(_GET_PREFIX):
            operation = "GetModelInvocationJob"
        elif method == "POST" and path == _TAGS_PATH:
            operation = "ListTagsForResource"
        else:
            raise ApiError("UnknownOperationException", f"{method} {path} is not implemented by this fake", 404)
        if self.store.consume_throttle():
            raise ApiError("ThrottlingException", "Too many requests, please wait before trying again.", 429)
        account, region = request_scope(environ, self.default_region)
        model = service_model().operation_model(operation)
        if operation == "GetModelInvocationJob":
            # WSGI servers decode %2F, so the identifier (an ARN, with slashes) is everything after the prefix.
            return 200, self._get(model, path[len(_GET_PREFIX) :], account, region)
        if operation == "ListTagsForResource":
            return 200, self._tags(model, environ)
        query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        return 200, self._list(model, query, account, region)

    def _tags(self, model: Any, environ: Mapping[str, Any]) -> dict[str, Any]:
        """ListTagsForResource of a job: {"tags": TagList}. Another resource type (a custom model, a guardrail) is
        not served here: ResourceNotFoundException, as for an unknown job. The caller's own account and region are
        not checked against the ARN's (AWS documents no cross-account answer)."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > _MAX_BODY:
            raise ApiError("ValidationException", "request body too large")
        try:
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        except ValueError:
            raise ApiError("ValidationException", "request body is not JSON") from None
        arn = body.get("resourceARN") if isinstance(body, dict) else None
        if not isinstance(arn, str):
            raise ApiError("ValidationException", "1 validation error detected: resourceARN must not be null")
        errors = _violations("resourceARN", model.input_shape.members["resourceARN"], arn)
        if errors:
            raise ApiError("ValidationException", _validation_message(errors))
        tags = self.store.tags_of(arn)
        if tags is None:
            raise ApiError("ResourceNotFoundException", f"Resource {arn} not found.", 404)
        return {"tags": tags}

    def _get(self, model: Any, identifier: str, account: str, region: str) -> dict[str, Any]:
        errors = _violations("jobIdentifier", model.input_shape.members["jobIdentifier"], identifier)
        if errors:
            raise ApiError("ValidationException", _validation_message(errors))
        job = self.store.get(identifier, region, account)
        if job is None:
            raise ApiError("ResourceNotFoundException", f"Model invocation job {identifier} not found.", 404)
        wire: dict[str, Any] = _to_wire(model.output_shape, job)
        return wire

    def _list(self, model: Any, query: Mapping[str, list[str]], account: str, region: str) -> dict[str, Any]:
        params, errors = _parse_query(model.input_shape, query)
        if errors:
            raise ApiError("ValidationException", _validation_message(errors))
        descending = params.get("sortOrder", "Descending") == "Descending"
        filters = {k: v for k, v in params.items() if k not in ("maxResults", "nextToken")}
        fingerprint = hashlib.sha256(json.dumps(filters, default=str, sort_keys=True).encode()).hexdigest()[:16]
        jobs = self.store.list(
            region,
            account,
            submit_time_after=params.get("submitTimeAfter"),
            submit_time_before=params.get("submitTimeBefore"),
            status_equals=params.get("statusEquals"),
            name_contains=params.get("nameContains"),
            sort_order="Descending" if descending else "Ascending",
        )
        if "nextToken" in params:
            after = _decode_token(params["nextToken"], fingerprint)
            jobs = [j for j in jobs if (_sort_key(j) < after if descending else _sort_key(j) > after)]
        limit = params.get("maxResults", DEFAULT_MAX_RESULTS)
        page = jobs[:limit]
        body: dict[str, Any] = {"invocationJobSummaries": page}
        if len(jobs) > limit:
            body["nextToken"] = _encode_token(_sort_key(page[-1]), fingerprint)
        wire: dict[str, Any] = _to_wire(model.output_shape, body)
        return wire


def _validation_message(errors: list[str]) -> str:
    noun = "error" if len(errors) == 1 else "errors"
    return f"{len(errors)} validation {noun} detected: {'; '.join(errors)}"


def _encode_token(after: tuple[datetime, str], fingerprint: str) -> str:
    """An opaque token naming the last job served, so pages stay stable while jobs are added."""
    raw = json.dumps({"t": after[0].isoformat(), "a": after[1], "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, fingerprint: str) -> tuple[datetime, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = (datetime.fromisoformat(data["t"]), str(data["a"]))
        same_query = data["f"] == fingerprint
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ApiError("ValidationException", "Invalid pagination token.") from exc
    if not same_query:
        raise ApiError("ValidationException", "The pagination token does not match the request's filters.")
    return after


def _respond(start_response: StartResponse, status: int, body: Mapping[str, Any], error: str = "") -> Iterable[bytes]:
    payload = json.dumps(body).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    if error:
        headers.append(("x-amzn-ErrorType", error))
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [payload]


# --- simulation -------------------------------------------------------------------------------------------------------
#
# The lifecycle follows the status descriptions of botocore's `ModelInvocationJobStatus` (ModelInvocationJobSummary
# .status in the API reference): Submitted ("submitted to a queue for validation") -> Validating -> Scheduled
# ("validated and is now in a queue ... will automatically start when it reaches its turn") -> InProgress ("has
# begun") -> Completed ("successfully completed"; records may still have failed: errorRecordCount); PartiallyCompleted
# ("Not all of your records could be processed in time"): the timeout ended a running job; Expired ("scheduled but
# didn't begin before the set timeout duration"): only a job that never started; Failed (here: failed validation);
# Stopping -> Stopped ("stopped by a user").
#
# Where AWS is silent the simulation takes a named policy (POLICIES), so rules can be judged in more than one world:
# - which Scheduled job starts when a slot frees: AWS says "when it reaches its turn"; both policies take submission
#   order.
# - how many jobs of a model run at once: AWS has a per-model Service Quotas quota, "Sum of in-progress and submitted
#   batch inference jobs using a base model" (Bedrock quotas page); which statuses count is not documented. Here a job
#   leaves Scheduled only while fewer than `concurrency` jobs of its model (per account and region) are InProgress.
# - how a model's throughput is shared among its running jobs: not documented. `fifo`: the oldest running job takes
#   all it can, the next what is left; `shared`: evenly among the running jobs (what one cannot use goes to the others).

# Bounded, so a demo that runs for days keeps flat memory; a benchmark of an hour logs far fewer events.
MAX_EVENTS = 100_000


@dataclass(frozen=True)
class Event:
    """One status change the simulation made: its ground truth, for scoring what the exporter concludes."""

    time: float
    job_arn: str
    model_id: str
    status: str
    processed: int
    total: int


@dataclass
class _Plan:
    """What the simulator decided for one job when it first saw it."""

    validating_at: float
    scheduled_at: float
    startable_at: float  # earliest start; a free slot of its model decides the rest
    fails_validation: bool
    error_rate: float
    processed: float = 0.0


class JobSimulator:
    """Moves a store's jobs through the documented lifecycle (see above), deterministically per seed.

    Per-job delays, validation failures and record error rates are drawn once, in submission order, from `seed`.
    """

    def __init__(
        self,
        store: JobStore,
        seed: int = 0,
        *,
        queue_seconds: tuple[float, float] = (5.0, 30.0),
        failure_rate: float = 0.05,
        error_rate: float = 0.02,
        records_per_second: float = 20.0,
        concurrency: int | Mapping[str, int] = 10,
        policy: str = "fifo",
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        self.store = store
        self.queue_seconds = queue_seconds
        self.failure_rate = failure_rate
        self.error_rate = error_rate
        self.records_per_second = records_per_second
        self.concurrency = concurrency
        self.policy = policy
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self._rng = random.Random(seed)
        self._plans: dict[str, _Plan] = {}
        self._last: float | None = None

    def limit(self, model_id: str) -> int:
        """How many jobs of this model may be InProgress at once (per account and region)."""
        if isinstance(self.concurrency, int):
            return self.concurrency
        return self.concurrency.get(model_id, 10)

    def stop(self, job_arn: str, now: float) -> Job:
        """Ask a job to stop, as StopModelInvocationJob does: Stopping now, Stopped on the next `advance`."""
        job = self.store.update(job_arn, now=now, status="Stopping")
        self._log(now, job)
        return job

    def advance(self, now: float, processed_records: Mapping[str, float] | None = None) -> list[Job]:
        """Move every unfinished job to `now`; returns the jobs whose status changed.

        `processed_records` maps model ID to records that model processed since the last call (e.g. from the
        metrics workload), shared among its running jobs by the policy; without it each running job does
        `records_per_second`.
        """
        elapsed = 0.0 if self._last is None else max(now - self._last, 0.0)
        self._last = now
        budget = dict(processed_records) if processed_records is not None else None
        fields: dict[str, dict[str, Any]] = {}
        running: dict[tuple[str, str, str], list[Job]] = {}
        startable: dict[tuple[str, str, str], list[Job]] = {}
        jobs = self.store.all()  # in submission order
        for job in jobs:
            if job["status"] in TERMINAL:
                self._plans.pop(job["jobArn"], None)
                continue
            scope = (*_arn_scope(job["jobArn"]), job["modelId"])
            fields[job["jobArn"]] = change = self._lifecycle(job, self._plan(job), now)
            status = change.get("status", job["status"])
            if status == "InProgress":
                running.setdefault(scope, []).append(job)
            elif status == "Scheduled" and now >= self._plans[job["jobArn"]].startable_at:
                startable.setdefault(scope, []).append(job)
        for scope, queue in startable.items():
            group = running.setdefault(scope, [])
            for job in queue[: max(self.limit(scope[2]) - len(group), 0)]:
                fields[job["jobArn"]]["status"] = "InProgress"
                group.append(job)
        for group in running.values():
            capacity = None if budget is None else budget.get(group[0]["modelId"], 0.0)
            steps = self._shares(group, capacity, elapsed)
            if budget is not None and group[0]["modelId"] in budget:
                budget[group[0]["modelId"]] -= sum(steps)
            for job, step in zip(group, steps, strict=True):
                fields[job["jobArn"]].update(self._progress(job, step, now))
        changed = []
        for job in jobs:
            change = {k: v for k, v in fields.get(job["jobArn"], {}).items() if job.get(k) != v}
            if change:
                updated = self.store.update(job["jobArn"], now=now, **change)
                if updated["status"] != job["status"]:
                    changed.append(updated)
                    self._log(now, updated)
        return changed

    def _log(self, now: float, job: Job) -> None:
        counts = job["processedRecordCount"], job["totalRecordCount"]
        self.events.append(Event(now, job["jobArn"], job["modelId"], job["status"], *counts))

    def _plan(self, job: Job) -> _Plan:
        if job["jobArn"] not in self._plans:
            low, high = self.queue_seconds
            submitted = job["submitTime"].timestamp()
            validating = submitted + self._rng.uniform(low, high) / 3
            scheduled = validating + self._rng.uniform(low, high)
            startable = scheduled + self._rng.uniform(low, high)
            fails = self._rng.random() < self.failure_rate
            # Most jobs have no bad records; the rest have a few percent around `error_rate`.
            rate = 0.0 if self._rng.random() < 0.5 else self._rng.uniform(0, 2 * self.error_rate)
            self._plans[job["jobArn"]] = _Plan(validating, scheduled, startable, fails, rate)
        return self._plans[job["jobArn"]]

    @staticmethod
    def _lifecycle(job: Job, plan: _Plan, now: float) -> dict[str, Any]:
        """The status change due at `now` that needs no free slot (starting a job does: see `advance`)."""
        status = job["status"]
        expires = job["jobExpirationTime"]
        if status == "Stopping":
            return {"status": "Stopped", "endTime": now, "message": "Stopped by request."}
        if now >= expires.timestamp():
            if status == "InProgress":  # PartiallyCompleted: "Not all of your records could be processed in time."
                return {
                    "status": "PartiallyCompleted",
                    "endTime": expires,
                    "message": "The job timed out before all records were processed.",
                }
            # Expired: "scheduled but didn't begin before the set timeout duration".
            return {"status": "Expired", "endTime": expires, "message": "The job timed out before it started."}
        if status == "Submitted" and now >= plan.validating_at:
            status = "Validating"
        if status == "Validating" and now >= plan.scheduled_at:
            if plan.fails_validation:
                return {"status": "Failed", "endTime": now, "message": "Input validation failed: malformed record."}
            status = "Scheduled"
        return {"status": status} if status != job["status"] else {}

    def _shares(self, group: list[Job], capacity: float | None, elapsed: float) -> list[float]:
        """Records each running job of one model processes in this step, by the policy."""
        rooms = [max(job["totalRecordCount"] - self._plans[job["jobArn"]].processed, 0.0) for job in group]
        if capacity is None:  # no workload: every job at its own fixed pace
            return [min(room, self.records_per_second * elapsed) for room in rooms]
        steps = [0.0] * len(group)
        left = max(capacity, 0.0)
        if self.policy == "fifo":
            for i, room in enumerate(rooms):
                steps[i] = min(room, left)
                left -= steps[i]
            return steps
        open_jobs = [i for i, room in enumerate(rooms) if room > 0]
        while left > 1e-9 and open_jobs:  # shared: water-filling, what a job cannot use goes to the others
            share = left / len(open_jobs)
            for i in open_jobs:
                take = min(share, rooms[i] - steps[i])
                steps[i] += take
                left -= take
            open_jobs = [i for i in open_jobs if rooms[i] - steps[i] > 1e-9]
        return steps

    def _progress(self, job: Job, step: float, now: float) -> dict[str, Any]:
        """Record counts after this step; processed = success + error, never above total."""
        plan = self._plans[job["jobArn"]]
        total = job["totalRecordCount"]
        plan.processed = min(plan.processed + max(step, 0.0), float(total))
        processed = min(int(plan.processed), total)
        errors = min(int(processed * plan.error_rate), processed)
        fields: dict[str, Any] = {
            "processedRecordCount": processed,
            "successRecordCount": processed - errors,
            "errorRecordCount": errors,
        }
        if processed >= total:  # Completed: every record processed; failed records are errorRecordCount
            fields.update(status="Completed", endTime=now)
        return fields
