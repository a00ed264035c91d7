"""ManifestReader against moto's S3 over HTTP (the suite's simulated AWS), with `now` passed in: no sleeps.

S3 refusals moto cannot produce (AccessDenied, KMS) come from a small S3 front on 127.0.0.1 answering S3's REST
error format (S3 API reference, "Error responses": an XML <Error> with Code and Message, 403 for AccessDenied).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from exporter.aws.session import AwsClients
from exporter.config import load_config_text
from exporter.demo.server import SimulatedAws
from exporter.manifests import (
    ACCESS_DENIED,
    KMS_DENIED,
    MALFORMED,
    NOT_FOUND,
    OK,
    TOO_LARGE,
    ManifestReader,
    RetrySchedule,
)
from exporter.model import Job, JobUsage
from tests.conftest import fast_config

OWNER = "123456789012"
ENDED = 1_700_000_000.0


class Counters:
    """The reader's counters, as the self-metrics would count them."""

    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()
        self.missing = 0
        self._lock = threading.Lock()

    def manifest_read(self, outcome: str) -> None:
        with self._lock:
            self.reads[outcome] += 1

    def manifest_missing(self) -> None:
        with self._lock:
            self.missing += 1


def job(job_id: str, bucket: str, status: str = "Completed", prefix: str = "out/", **extra: Any) -> Job:
    fields: dict[str, Any] = {
        "arn": f"arn:aws:bedrock:us-east-1:{OWNER}:model-invocation-job/{job_id}",
        "name": f"job-{job_id}",
        "model_id": "amazon.nova-pro-v1:0",
        "status": status,
        "invocation_type": "InvokeModel",
        "submit_time": ENDED - 3600,
        "end_time": ENDED if status in ("Completed", "Failed", "Stopped", "Expired", "PartiallyCompleted") else None,
        "expiration_time": None,
        "total_records": 100.0,
        "processed_records": 100.0,
        "succeeded_records": 100.0,
        "failed_records": 0.0,
        "output_s3_uri": f"s3://{bucket}/{prefix}",
        "output_bucket_owner": OWNER,
    }
    fields.update(extra)
    return Job(**fields)


class Clients:
    """The exporter's own client factory (so the suite's IAM check sees the calls), counting client requests."""

    def __init__(self, endpoint: str) -> None:
        config = load_config_text(fast_config(endpoint))
        self._target = config.targets[0]
        self._clients = AwsClients(config.aws)
        self.made = 0

    def __call__(self) -> Any:
        self.made += 1
        return self._clients.client("s3", self._target, "us-east-1", OWNER)


@pytest.fixture
def s3(aws: SimulatedAws) -> Any:
    return boto3.client("s3", region_name="us-east-1", endpoint_url=aws.url)


def put_manifest(s3: Any, bucket: str, key: str, body: bytes) -> None:
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def manifest(input_tokens: int, output_tokens: int) -> bytes:
    return json.dumps(
        {
            "totalRecordCount": 100,
            "processedRecordCount": 100,
            "successRecordCount": 99,
            "errorRecordCount": 1,
            "inputTokenCount": input_tokens,
            "outputTokenCount": output_tokens,
        }
    ).encode()


def settle(reader: ManifestReader, jobs: list[Job], now: float) -> tuple[JobUsage, ...]:
    """One cycle: schedule, let the reads finish (bounded wait), and return what the next cycle would see."""
    reader.update(jobs, now)
    assert reader.wait(10.0), "manifest reads did not finish within 10 s"
    return reader.update(jobs, now)


def test_finished_job_usage_is_read_once_exactly(aws: SimulatedAws, s3: Any) -> None:
    put_manifest(s3, "usage-once", "out/aaaaaaaa0001/manifest.json.out", manifest(1234, 567))
    counters, clients = Counters(), Clients(aws.url)
    reader = ManifestReader(clients, counters)
    try:
        jobs = [job("aaaaaaaa0001", "usage-once")]
        assert settle(reader, jobs, ENDED + 5) == (
            JobUsage(jobs[0].arn, 1234, 567, records=100, succeeded_records=99, failed_records=1),
        )
        reads = aws.count("GET /usage-once/out/aaaaaaaa0001/manifest.json.out")
        assert reads == 1
        for cycle in range(20):  # 20 more cycles, a minute apart: no S3 request at all
            assert settle(reader, jobs, ENDED + 60 * (cycle + 1))[0].input_tokens == 1234
        assert aws.count("GET /usage-once/out/aaaaaaaa0001/manifest.json.out") == reads
        assert counters.reads == Counter({OK: 1}) and counters.missing == 0
        assert clients.made == 1
    finally:
        reader.close()


def test_missing_manifest_is_retried_with_backoff_then_counted_missing_never_zero(aws: SimulatedAws, s3: Any) -> None:
    s3.create_bucket(Bucket="usage-missing")
    counters = Counters()
    schedule = RetrySchedule(first_retry=60, max_interval=600, give_up_after=3600)
    reader = ManifestReader(Clients(aws.url), counters, schedule=schedule)
    path = "GET /usage-missing/out/bbbbbbbb0001/manifest.json.out"
    try:
        jobs = [job("bbbbbbbb0001", "usage-missing")]
        reads_at: list[float] = []
        for now in range(int(ENDED), int(ENDED) + 2 * 3600, 30):  # every 30 s for two hours
            before = aws.count(path)
            assert settle(reader, jobs, float(now)) == ()
            if aws.count(path) > before:
                reads_at.append(now - ENDED)
        # 0, then +60, +120, +240, +480, then every 600 s until 3600 s after the end; never after
        assert reads_at == [0, 60, 180, 420, 900, 1500, 2100, 2700, 3300]
        assert counters.reads == Counter({NOT_FOUND: len(reads_at)})
        assert counters.missing == 1
    finally:
        reader.close()


def test_manifest_appearing_later_is_read_on_the_next_due_attempt(aws: SimulatedAws, s3: Any) -> None:
    s3.create_bucket(Bucket="usage-late")
    counters = Counters()
    reader = ManifestReader(Clients(aws.url), counters)
    try:
        jobs = [job("cccccccc0001", "usage-late")]
        assert settle(reader, jobs, ENDED) == ()
        put_manifest(s3, "usage-late", "out/cccccccc0001/manifest.json.out", manifest(10, 20))
        assert settle(reader, jobs, ENDED + 59) == ()  # not due yet: no request
        assert [u.output_tokens for u in settle(reader, jobs, ENDED + 60)] == [20]
        assert counters.reads == Counter({NOT_FOUND: 1, OK: 1})
    finally:
        reader.close()


def test_hostile_manifests_are_refused_counted_and_not_read_again(aws: SimulatedAws, s3: Any) -> None:
    put_manifest(s3, "usage-hostile", "out/dddddddd0001/manifest.json.out", b"{" + b" " * 70_000 + b"}")
    put_manifest(s3, "usage-hostile", "out/dddddddd0002/manifest.json.out", b'{"inputTokenCount": -5}')
    put_manifest(s3, "usage-hostile", "out/dddddddd0003/manifest.json.out", manifest(1, 2))
    counters = Counters()
    reader = ManifestReader(Clients(aws.url), counters, max_bytes=64 * 1024)
    try:
        jobs = [job(f"dddddddd000{i}", "usage-hostile") for i in (1, 2, 3)]
        assert [u.arn for u in settle(reader, jobs, ENDED)] == [jobs[2].arn]
        for hour in range(1, 5):
            settle(reader, jobs, ENDED + 3600 * hour)
        assert counters.reads == Counter({TOO_LARGE: 1, MALFORMED: 1, OK: 1})
        assert counters.missing == 2
        assert aws.count("GET /usage-hostile/out/dddddddd0001/manifest.json.out") == 1
    finally:
        reader.close()


def test_unfinished_jobs_create_no_client_and_jobs_without_output_are_missing_at_once(aws: SimulatedAws) -> None:
    counters, clients = Counters(), Clients(aws.url)
    reader = ManifestReader(clients, counters)
    try:
        running = [job("eeeeeeee0001", "usage-none", status="InProgress"), job("eeeeeeee0002", "x", status="Paused")]
        for minute in range(5):
            assert settle(reader, running, ENDED + 60 * minute) == ()
        assert clients.made == 0 and counters.missing == 0
        no_output = job("eeeeeeee0003", "usage-none", output_s3_uri=None)
        bad_owner = job("eeeeeeee0004", "usage-none", output_bucket_owner="someone")
        for minute in range(5):
            assert settle(reader, [*running, no_output, bad_owner], ENDED + 60 * minute) == ()
        assert counters.missing == 2 and clients.made == 0 and not counters.reads
    finally:
        reader.close()


def test_a_finished_job_that_processed_nothing_is_not_fetched_and_not_missing(aws: SimulatedAws) -> None:
    counters, clients = Counters(), Clients(aws.url)
    reader = ManifestReader(clients, counters)
    try:
        failed = job("ffffffff0001", "usage-none", status="Failed", processed_records=0.0, succeeded_records=0.0)
        unknown = job("ffffffff0002", "usage-none", processed_records=None)  # counts absent: still tried
        aws.reset_counts()
        for minute in range(5):
            settle(reader, [failed, unknown], ENDED + 60 * minute)
        assert aws.count("GET /usage-none/out/ffffffff0001/manifest.json.out") == 0
        assert aws.count("GET /usage-none/out/ffffffff0002/manifest.json.out") >= 1
        assert counters.reads[OK] == 0 and counters.missing == 0 and clients.made >= 1
    finally:
        reader.close()


def test_reads_are_bounded_and_jobs_past_retention_are_forgotten(aws: SimulatedAws, s3: Any) -> None:
    for i in range(6):
        put_manifest(s3, "usage-many", f"out/ffffffff000{i}/manifest.json.out", manifest(i, i))
    counters = Counters()
    reader = ManifestReader(Clients(aws.url), counters, max_concurrency=2)
    try:
        jobs = [job(f"ffffffff000{i}", "usage-many", end_time=ENDED + i) for i in range(6)]
        # two reads in flight at most, oldest ended first
        assert reader.update(jobs, ENDED + 10) == ()
        assert reader.wait(10.0)
        assert [u.input_tokens for u in reader.update(jobs, ENDED + 10)] == [0, 1]  # and schedules 2 and 3
        assert reader.wait(10.0)
        reads = sum(aws.count(f"GET /usage-many/out/ffffffff000{i}/manifest.json.out") for i in range(6))
        assert reads == 4
        # jobs 0-1 and 4-5 leave retention; 4 and 5 were never read: counted missing as they leave
        assert [u.input_tokens for u in reader.update(jobs[2:4], ENDED + 30)] == [2, 3]
        assert counters.missing == 2
        assert reader.update([], ENDED + 40) == ()
        assert counters.reads == Counter({OK: 4}) and counters.missing == 2
    finally:
        reader.close()


# --- S3 refusals moto cannot produce ----------------------------------------------------------------------------------


class RefusingS3:
    """Answers every GetObject with an S3 REST error chosen by the bucket name; records the request headers."""

    ERRORS = {
        "denied": ("AccessDenied", "Access Denied"),
        "kms": (
            "AccessDenied",
            "User: arn:aws:sts::123456789012:assumed-role/r is not authorized to perform: kms:Decrypt",
        ),
    }

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        refusing = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                refusing.headers.append({k.lower(): v for k, v in self.headers.items()})
                bucket = self.path.lstrip("/").split("/", 1)[0]
                code, message = refusing.ERRORS.get(bucket, ("NoSuchKey", "The specified key does not exist."))
                status = 404 if code == "NoSuchKey" else 403
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>{message}</Message>"
                    "<RequestId>R1</RequestId><HostId>H1</HostId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test asserts on `headers`."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RefusingS3:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def refusing() -> Iterator[RefusingS3]:
    with RefusingS3() as server:
        yield server


def test_access_denied_and_kms_denied_are_counted_and_retried(refusing: RefusingS3) -> None:
    counters = Counters()
    reader = ManifestReader(Clients(refusing.url), counters)
    try:
        jobs = [job("gggggggg0001", "denied"), job("gggggggg0002", "kms")]
        assert settle(reader, jobs, ENDED) == ()
        assert counters.reads == Counter({ACCESS_DENIED: 1, KMS_DENIED: 1})
        assert settle(reader, jobs, ENDED + 60) == ()  # retried: permissions may be granted meanwhile
        assert counters.reads == Counter({ACCESS_DENIED: 2, KMS_DENIED: 2}) and counters.missing == 0
        # the job's s3BucketOwner went along as ExpectedBucketOwner (header per botocore's s3 model)
        assert {h.get("x-amz-expected-bucket-owner") for h in refusing.headers} == {OWNER}
    finally:
        reader.close()


def test_no_expected_owner_header_when_the_job_names_none(refusing: RefusingS3) -> None:
    reader = ManifestReader(Clients(refusing.url), Counters())
    try:
        settle(reader, [job("hhhhhhhh0001", "elsewhere", output_bucket_owner=None)], ENDED)
        assert refusing.headers and "x-amz-expected-bucket-owner" not in refusing.headers[0]
    finally:
        reader.close()


# --- the demo writes the manifests the reader reads -------------------------------------------------------------------


def test_demo_jobs_write_manifests_the_reader_reads_through_the_job_api(fresh_aws: SimulatedAws, s3: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from exporter.aws.bedrock import list_jobs
    from exporter.demo.workload import OUTPUT_BUCKET, Workload, default_models
    from tests.conftest import cloudwatch

    models = default_models()
    workload = Workload({r: cloudwatch(fresh_aws, r) for r in models}, models, fresh_aws.jobs, s3=s3)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for step in range(150):
        workload.step(2.0, start + timedelta(seconds=2 * step))
    now = (start + timedelta(seconds=300)).timestamp()
    clients = Clients(fresh_aws.url)
    # A separate AwsClients for the job API: a second boto3 Session over one botocore session breaks S3 clients
    # (boto3 injects its S3 transfer methods once per Session; reported to the lead for exporter/aws/session.py).
    lister = Clients(fresh_aws.url)
    bedrock = lister._clients.client("bedrock", lister._target, "us-east-1", OWNER)
    jobs = list_jobs(bedrock, start.timestamp() - 86400, 1000)
    finished = [j for j in jobs if j.finished]
    assert finished and all(j.output_s3_uri == f"s3://{OUTPUT_BUCKET}/{j.name.rsplit('-', 1)[0]}/" for j in jobs)
    assert {j.output_bucket_owner for j in jobs} == {"123456789012"}
    counters = Counters()
    reader = ManifestReader(clients, counters, max_concurrency=4)
    try:
        for _ in range(len(finished)):  # at most 4 reads per cycle
            reader.update(jobs, now)
            assert reader.wait(10.0)
        usages = {u.arn: u for u in reader.update(jobs, now)}
    finally:
        reader.close()
    tokens = {m.model_id: m for ms in models.values() for m in ms}
    for j in finished:
        if not j.processed_records:
            assert j.arn not in usages  # nothing processed (failed validation): no manifest, never a zero
            continue
        usage = usages[j.arn]
        assert usage.records == j.processed_records and usage.succeeded_records == j.succeeded_records
        assert usage.input_tokens == j.processed_records * tokens[j.model_id].input_tokens_per_record
        assert usage.output_tokens == (j.succeeded_records or 0) * tokens[j.model_id].output_tokens_per_record
    assert counters.reads[OK] == len(usages) > 0
    assert counters.reads[OK] + counters.reads[NOT_FOUND] == len(finished)
