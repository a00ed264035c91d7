"""The fake Bedrock batch job API, called by real boto3 clients over loopback HTTP, and its job simulator."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from werkzeug.serving import make_server

from exporter.demo.jobs import TERMINAL, Job, JobsApp, JobSimulator, JobStore, handles

T0 = datetime(2025, 9, 1, 12, 0, tzinfo=UTC)
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
MODEL_2 = "amazon.nova-pro-v1:0"
SIGNED = "AWS4-HMAC-SHA256 Credential=testing/20250901/{region}/bedrock/aws4_request, SignedHeaders=host, Signature=0"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[JobStore, str]]:
    store = JobStore(seed=1)
    server = make_server("127.0.0.1", 0, JobsApp(store), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="fake-bedrock-jobs", daemon=True)
    thread.start()
    yield store, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def store(served: tuple[JobStore, str]) -> Iterator[JobStore]:
    served[0].clear()
    yield served[0]
    served[0].clear()


@pytest.fixture
def url(served: tuple[JobStore, str]) -> str:
    return served[1]


def bedrock(url: str, region: str = "us-east-1", **config: Any) -> Any:
    return boto3.client(
        "bedrock",
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


def submit_many(store: JobStore, n: int, region: str = "us-east-1") -> list[dict[str, Any]]:
    return [
        store.submit(f"job-{i:02d}", MODEL if i % 2 else MODEL_2, 100 + i, region, now=T0 + timedelta(minutes=i))
        for i in range(n)
    ]


def raw_get(url: str, path: str, region: str = "us-east-1") -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url + path, headers={"Authorization": SIGNED.format(region=region)})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.load(exc)


def names(jobs: list[dict[str, Any]]) -> list[str]:
    return [job["jobName"] for job in jobs]


def test_paginator_walks_every_job_in_pages(store: JobStore, url: str) -> None:
    submit_many(store, 25)
    pages = list(bedrock(url).get_paginator("list_model_invocation_jobs").paginate(PaginationConfig={"PageSize": 10}))
    assert [len(p["invocationJobSummaries"]) for p in pages] == [10, 10, 5]
    assert all("nextToken" in p for p in pages[:2]) and "nextToken" not in pages[2]
    listed = [job for page in pages for job in page["invocationJobSummaries"]]
    assert names(listed) == [f"job-{i:02d}" for i in range(24, -1, -1)]  # newest first by default


def test_pages_stay_stable_when_jobs_arrive_between_pages(store: JobStore, url: str) -> None:
    submit_many(store, 5)
    client = bedrock(url)
    first = client.list_model_invocation_jobs(maxResults=2, sortOrder="Ascending")
    store.submit("late", MODEL, 1, now=T0 - timedelta(days=1))
    rest = client.list_model_invocation_jobs(maxResults=10, sortOrder="Ascending", nextToken=first["nextToken"])
    assert names(first["invocationJobSummaries"] + rest["invocationJobSummaries"]) == [f"job-{i:02d}" for i in range(5)]


def test_filters(store: JobStore, url: str) -> None:
    jobs = submit_many(store, 6)
    store.update(jobs[1]["jobArn"], status="InProgress")
    store.update(jobs[4]["jobArn"], status="InProgress")
    client = bedrock(url)

    def listed(**kwargs: Any) -> list[str]:
        return names(client.list_model_invocation_jobs(sortOrder="Ascending", **kwargs)["invocationJobSummaries"])

    assert listed(statusEquals="InProgress") == ["job-01", "job-04"]
    assert listed(statusEquals="Completed") == []
    assert listed(nameContains="b-0") == [f"job-{i:02d}" for i in range(6)]
    assert listed(nameContains="03") == ["job-03"]
    assert listed(submitTimeAfter=T0 + timedelta(minutes=3)) == ["job-04", "job-05"]
    assert listed(submitTimeBefore=T0 + timedelta(minutes=2)) == ["job-00", "job-01"]
    assert listed(submitTimeAfter=T0, submitTimeBefore=T0 + timedelta(minutes=5), statusEquals="InProgress") == [
        "job-01",
        "job-04",
    ]
    assert listed(sortBy="CreationTime") == [f"job-{i:02d}" for i in range(6)]


def test_sort_order(store: JobStore, url: str) -> None:
    submit_many(store, 4)
    client = bedrock(url)
    ascending = client.list_model_invocation_jobs(sortOrder="Ascending")["invocationJobSummaries"]
    descending = client.list_model_invocation_jobs(sortOrder="Descending")["invocationJobSummaries"]
    assert names(ascending) == ["job-00", "job-01", "job-02", "job-03"]
    assert names(descending) == names(ascending)[::-1]
    assert names(client.list_model_invocation_jobs()["invocationJobSummaries"]) == names(descending)


def test_get_by_arn_and_job_id_matches_the_store(store: JobStore, url: str) -> None:
    job = store.submit(
        "nightly",
        MODEL,
        42,
        now=T0,
        client_request_token="token-1",
        vpc_config={"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]},
    )
    client = bedrock(url)
    by_arn = client.get_model_invocation_job(jobIdentifier=job["jobArn"])
    by_arn.pop("ResponseMetadata")
    assert by_arn == job
    assert by_arn["submitTime"] == T0 and by_arn["jobExpirationTime"] == T0 + timedelta(hours=72)
    by_id = client.get_model_invocation_job(jobIdentifier=job["jobArn"].rsplit("/", 1)[1])
    assert by_id["jobArn"] == job["jobArn"]
    listed = client.list_model_invocation_jobs()["invocationJobSummaries"]
    assert listed == [job]


def test_unknown_job_is_resource_not_found(store: JobStore, url: str) -> None:
    with pytest.raises(ClientError) as caught:
        bedrock(url).get_model_invocation_job(
            jobIdentifier="arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefabcdef"
        )
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_malformed_job_identifier_is_a_validation_error(store: JobStore, url: str) -> None:
    status, headers, body = raw_get(url, "/model-invocation-job/" + quote("not-a-job", safe=""))
    assert status == 400 and headers["x-amzn-ErrorType"] == "ValidationException"
    assert "jobIdentifier" in body["message"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"maxResults": 0}, "greater than or equal to 1"),
        ({"maxResults": 1001}, "less than or equal to 1000"),
        ({"sortOrder": "Sideways"}, "enum value set"),
        ({"statusEquals": "Running"}, "enum value set"),
        ({"nextToken": "bm90IGEgdG9rZW4"}, "pagination token"),
    ],
)
def test_invalid_list_requests_are_validation_errors(
    store: JobStore, url: str, kwargs: dict[str, Any], fragment: str
) -> None:
    client = bedrock(url, parameter_validation=False)  # botocore checks minimums itself; the server must too
    with pytest.raises(ClientError) as caught:
        client.list_model_invocation_jobs(**kwargs)
    error = caught.value.response
    assert error["Error"]["Code"] == "ValidationException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert fragment in error["Error"]["Message"]


def test_validation_error_wire_format(store: JobStore, url: str) -> None:
    status, headers, body = raw_get(url, "/model-invocation-jobs?maxResults=0")
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "ValidationException"
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "message": "1 validation error detected: Value '0' at 'maxResults' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    }


def test_throttling(store: JobStore, url: str) -> None:
    submit_many(store, 1)
    # botocore's `max_attempts` counts retries only; `total_max_attempts` includes the first call, so 1 = no retry.
    client = bedrock(url, retries={"total_max_attempts": 1, "mode": "standard"})
    store.throttle_next(2)
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            client.list_model_invocation_jobs()
        assert caught.value.response["Error"]["Code"] == "ThrottlingException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert len(client.list_model_invocation_jobs()["invocationJobSummaries"]) == 1


def test_default_retries_ride_out_a_throttle(store: JobStore, url: str) -> None:
    submit_many(store, 1)
    store.throttle_next(1)
    client = bedrock(url, retries={"max_attempts": 3, "mode": "standard"})
    response = client.list_model_invocation_jobs()
    assert len(response["invocationJobSummaries"]) == 1
    assert response["ResponseMetadata"]["RetryAttempts"] == 1


def test_regions_are_isolated(store: JobStore, url: str) -> None:
    east = submit_many(store, 3, "us-east-1")
    store.submit("west-only", MODEL, 5, "us-west-2", now=T0)
    west = bedrock(url, "us-west-2")
    assert names(west.list_model_invocation_jobs()["invocationJobSummaries"]) == ["west-only"]
    with pytest.raises(ClientError) as caught:
        west.get_model_invocation_job(jobIdentifier=east[0]["jobArn"])
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert len(bedrock(url).list_model_invocation_jobs()["invocationJobSummaries"]) == 3


def test_unimplemented_operations_say_so(store: JobStore, url: str) -> None:
    assert handles({"PATH_INFO": "/model-invocation-jobs"})
    assert handles({"PATH_INFO": "/model-invocation-job/abc"})
    assert not handles({"PATH_INFO": "/"})
    with pytest.raises(ClientError) as caught:
        bedrock(url).stop_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"


# --- conformance: what the fake puts on the wire, checked against botocore's model ----------------------------------

SERVICE = botocore.session.get_session().get_service_model("bedrock")


def conformance_errors(shape: Any, value: Any, where: str) -> list[str]:
    """Where a restJson1 body value disagrees with a botocore shape (members, required, types, enums, ranges)."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        found = [f"{where}.{k}: not in {shape.name}" for k in value if k not in shape.members]
        found += [f"{where}.{k}: required by {shape.name}, missing" for k in shape.required_members if k not in value]
        if shape.metadata.get("union") and len(value) != 1:
            found.append(f"{where}: union {shape.name} needs exactly one member")
        for k, v in value.items():
            if k in shape.members:
                found += conformance_errors(shape.members[k], v, f"{where}.{k}")
        return found
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: expected an array"]
        return [e for i, v in enumerate(value) for e in conformance_errors(shape.member, v, f"{where}[{i}]")]
    if kind == "timestamp":
        assert shape.serialization.get("timestampFormat") == "iso8601"
        try:
            ok = isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
        except ValueError:
            ok = False
        return [] if ok else [f"{where}: {value!r} is not an iso8601 timestamp with a zone"]
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{where}: {value!r} is not an integer"]
        low, high = shape.metadata.get("min", value), shape.metadata.get("max", value)
        return [] if low <= value <= high else [f"{where}: {value} outside [{low}, {high}]"]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: {value!r} is not a string"]
        if shape.enum and value not in shape.enum:
            return [f"{where}: {value!r} not in enum {shape.enum}"]
        return []
    return [f"{where}: unexpected shape type {kind}"]


def every_status_job(store: JobStore) -> list[dict[str, Any]]:
    """One job per status, with every optional member in play."""
    jobs = []
    for i, status in enumerate(SERVICE.shape_for("ModelInvocationJobStatus").enum):
        job = store.submit(
            f"conf-{i}",
            MODEL,
            10,
            now=T0 + timedelta(minutes=i),
            timeout_hours=24 + i,
            model_invocation_type="Converse" if i % 2 else "InvokeModel",
            client_request_token=f"tok{i}",
            vpc_config={"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]} if i % 3 == 0 else None,
        )
        ended: dict[str, Any] = {"endTime": T0 + timedelta(hours=1), "message": "done"} if status in TERMINAL else {}
        jobs.append(store.update(job["jobArn"], status=status, processedRecordCount=10, successRecordCount=10, **ended))
    return jobs


def test_list_response_conforms_to_the_model(store: JobStore, url: str) -> None:
    every_status_job(store)
    status, headers, body = raw_get(url, "/model-invocation-jobs?maxResults=4")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert len(body["invocationJobSummaries"]) == 4 and "nextToken" in body
    output = SERVICE.operation_model("ListModelInvocationJobs").output_shape
    assert conformance_errors(output, body, "ListModelInvocationJobsResponse") == []
    assert output.members["invocationJobSummaries"].member.name == "ModelInvocationJobSummary"


def test_get_response_conforms_to_the_model(store: JobStore, url: str) -> None:
    output = SERVICE.operation_model("GetModelInvocationJob").output_shape
    for job in every_status_job(store):
        status, _, body = raw_get(url, "/model-invocation-job/" + quote(job["jobArn"], safe=""))
        assert status == 200
        assert conformance_errors(output, body, "GetModelInvocationJobResponse") == []
        assert set(body) == set(job)


def test_conformance_check_catches_drift() -> None:
    summary = SERVICE.shape_for("ModelInvocationJobSummary")
    bad = {"jobArn": "x", "jobName": "n", "modelId": "m", "roleArn": "r", "submitTime": 5, "jobState": "?"}
    errors = conformance_errors(summary, bad, "job")
    assert any("jobState: not in" in e for e in errors)
    assert any("submitTime" in e for e in errors)
    assert any("inputDataConfig: required" in e for e in errors)


def test_store_rejects_members_the_model_lacks() -> None:
    store = JobStore(seed=0)
    job = store.submit("x", MODEL, 1, now=T0)
    with pytest.raises(ValueError, match="jobState"):
        store.update(job["jobArn"], jobState="Running")
    with pytest.raises(ValueError, match="status"):
        store.update(job["jobArn"], status="Running")
    with pytest.raises(ValueError, match="timeoutDurationInHours"):
        store.submit("y", MODEL, 1, timeout_hours=12)


# --- simulator -------------------------------------------------------------------------------------------------------


def check_counts(job: dict[str, Any]) -> None:
    processed, total = job["processedRecordCount"], job["totalRecordCount"]
    assert processed == job["successRecordCount"] + job["errorRecordCount"]
    assert 0 <= processed <= total
    assert min(job["successRecordCount"], job["errorRecordCount"]) >= 0


def run(simulator: JobSimulator, store: JobStore, start: float, seconds: float, step: float = 5.0) -> list[str]:
    """Advance in steps, checking invariants; returns the status history of the store's first job."""
    history: list[str] = []
    previous: dict[str, dict[str, Any]] = {}
    t = start
    while t <= start + seconds:
        simulator.advance(t)
        for job in store.all():
            check_counts(job)
            before = previous.get(job["jobArn"])
            if before is not None:
                assert job["processedRecordCount"] >= before["processedRecordCount"]
                assert job["errorRecordCount"] >= before["errorRecordCount"]
                if before["status"] in TERMINAL:
                    assert job == before  # finished jobs never change
            previous[job["jobArn"]] = job
        first = store.all()[0]["status"]
        if not history or history[-1] != first:
            history.append(first)
        t += step
    return history


def test_simulator_walks_the_lifecycle_with_consistent_counts() -> None:
    store = JobStore(seed=3)
    start = T0.timestamp()
    store.submit("happy", MODEL, 500, now=start)
    simulator = JobSimulator(store, seed=3, failure_rate=0.0, error_rate=0.2, records_per_second=10.0)
    history = run(simulator, store, start, 600)
    assert history == ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
    job = store.all()[0]
    assert job["processedRecordCount"] == 500
    assert job["endTime"] >= job["submitTime"]
    # Completed: "successfully completed" even with failed records (they are errorRecordCount); PartiallyCompleted
    # is for records not processed in time (botocore's ModelInvocationJobStatus documentation).
    assert [e.status for e in simulator.events] == ["Validating", "Scheduled", "InProgress", "Completed"]


def test_simulator_is_deterministic_per_seed() -> None:
    def outcome(seed: int) -> list[tuple[str, int, int]]:
        store = JobStore(seed=0)
        for i in range(12):
            store.submit(f"j{i}", MODEL, 300, now=T0.timestamp() + i)
        simulator = JobSimulator(store, seed=seed, failure_rate=0.3, error_rate=0.2)
        for t in range(0, 200, 7):
            simulator.advance(T0.timestamp() + t)
        return [(j["status"], j["processedRecordCount"], j["errorRecordCount"]) for j in store.all()]

    assert outcome(5) == outcome(5)
    assert outcome(5) != outcome(6)
    statuses = {status for status, _, _ in outcome(5)}
    assert "Failed" in statuses and "Completed" in statuses


def _three_running(policy: str) -> tuple[JobStore, JobSimulator, dict[str, Job]]:
    store = JobStore(seed=0)
    start = T0.timestamp()
    jobs = {
        "old": store.submit("old", MODEL, 100, now=start),
        "new": store.submit("new", MODEL, 100, now=start + 1),
        "other": store.submit("other", MODEL_2, 100, now=start),
    }
    simulator = JobSimulator(store, seed=0, failure_rate=0.0, queue_seconds=(1.0, 1.0), policy=policy)
    simulator.advance(start + 10, {})  # all three reach InProgress, nothing processed yet
    assert {j["status"] for j in store.all()} == {"InProgress"}
    return store, simulator, jobs


def test_fifo_gives_a_models_throughput_to_its_oldest_running_job_first() -> None:
    store, simulator, jobs = _three_running("fifo")
    simulator.advance(T0.timestamp() + 20, {MODEL: 150.5})
    processed = {j["jobName"]: j["processedRecordCount"] for j in store.all()}
    assert processed == {"old": 100, "new": 50, "other": 0}
    assert store.get(jobs["old"]["jobArn"])["status"] == "Completed"  # type: ignore[index]
    simulator.advance(T0.timestamp() + 30, {MODEL: 49.5})
    assert store.get(jobs["new"]["jobArn"])["processedRecordCount"] == 100  # type: ignore[index]
    assert store.get(jobs["other"]["jobArn"])["status"] == "InProgress"  # type: ignore[index]


def test_shared_splits_a_models_throughput_evenly_and_passes_on_what_a_job_cannot_use() -> None:
    store = JobStore(seed=0)
    start = T0.timestamp()
    for name, model, records in (("old", MODEL, 100), ("new", MODEL, 300), ("other", MODEL_2, 100)):
        store.submit(name, model, records, now=start)
    simulator = JobSimulator(store, seed=0, failure_rate=0.0, queue_seconds=(1.0, 1.0), policy="shared")
    simulator.advance(start + 10, {})
    simulator.advance(start + 20, {MODEL: 60.0})
    assert {j["jobName"]: j["processedRecordCount"] for j in store.all()} == {"old": 30, "new": 30, "other": 0}
    simulator.advance(start + 30, {MODEL: 200.0})  # 100 each; old can use 70 only, new gets the other 130
    assert {j["jobName"]: (j["status"], j["processedRecordCount"]) for j in store.all()} == {
        "old": ("Completed", 100),
        "new": ("InProgress", 160),
        "other": ("InProgress", 0),
    }


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="policy must be one of fifo, shared"):
        JobSimulator(JobStore(), policy="random")


def test_a_model_at_its_concurrency_limit_queues_jobs_in_scheduled_in_submission_order() -> None:
    store = JobStore(seed=0)
    start = T0.timestamp()
    arns = [store.submit(f"j{i}", MODEL, 100, now=start + i)["jobArn"] for i in range(4)]
    simulator = JobSimulator(store, seed=0, failure_rate=0.0, queue_seconds=(1.0, 1.0), concurrency={MODEL: 2})
    simulator.advance(start + 10, {})

    def statuses() -> list[str]:
        return [store.get(arn)["status"] for arn in arns]  # type: ignore[index]

    assert statuses() == ["InProgress", "InProgress", "Scheduled", "Scheduled"]
    assert simulator.limit(MODEL) == 2 and simulator.limit(MODEL_2) == 10
    simulator.advance(start + 20, {MODEL: 100.0})  # fifo: the first job finishes
    assert statuses() == ["Completed", "InProgress", "Scheduled", "Scheduled"]
    simulator.advance(start + 21, {})  # its slot is free from the next step: the oldest waiting job starts
    assert statuses() == ["Completed", "InProgress", "InProgress", "Scheduled"]


def test_timeouts_expire_jobs_that_never_started_and_partially_complete_running_ones() -> None:
    store = JobStore(seed=0)
    start = T0.timestamp()
    running = store.submit("too-big", MODEL, 10_000_000, now=start, timeout_hours=24)
    queued = store.submit("never-runs", MODEL, 100, now=start + 1, timeout_hours=24)
    stopped = store.submit("stop-me", MODEL_2, 10_000, now=start)
    simulator = JobSimulator(
        store, seed=0, failure_rate=0.0, queue_seconds=(1.0, 1.0), concurrency={MODEL: 1}, records_per_second=1.0
    )
    simulator.advance(start + 10)
    assert simulator.stop(stopped["jobArn"], start + 11)["status"] == "Stopping"
    changed = simulator.advance(start + 12)
    assert [j["status"] for j in changed] == ["Stopped"]
    assert store.get(queued["jobArn"])["status"] == "Scheduled"  # type: ignore[index]
    simulator.advance(start + 24 * 3600 + 5)
    late = store.get(running["jobArn"])
    assert late is not None and late["status"] == "PartiallyCompleted"  # ran out of time while running
    assert late["endTime"] == late["jobExpirationTime"]
    check_counts(late)
    assert 0 < late["processedRecordCount"] < late["totalRecordCount"]
    never = store.get(queued["jobArn"])
    assert never is not None and never["status"] == "Expired" and never["processedRecordCount"] == 0
    assert never["endTime"] == never["jobExpirationTime"]
    # One step went Submitted -> Validating -> Scheduled: the log has the status each step ended in.
    assert [e.status for e in simulator.events if e.job_arn == queued["jobArn"]] == ["Scheduled", "Expired"]


def test_store_times_round_trip_through_the_wire(store: JobStore, url: str) -> None:
    job = store.submit("now", MODEL, 1, now=T0.timestamp() + 0.123456)
    got = bedrock(url).get_model_invocation_job(jobIdentifier=job["jobArn"])
    assert got["submitTime"] == job["submitTime"] == T0 + timedelta(milliseconds=123)
