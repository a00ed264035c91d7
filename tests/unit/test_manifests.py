"""The pure parts of manifest reading: the documented format, the assumed layout, outcomes, the retry schedule."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from hypothesis import given
from hypothesis import strategies as st

from exporter.aws.s3 import ObjectTooLargeError
from exporter.errors import BadAnswerError
from exporter.manifests import (
    ACCESS_DENIED,
    ERROR,
    KMS_DENIED,
    MALFORMED,
    MAX_COUNT,
    NOT_FOUND,
    TOO_LARGE,
    MalformedManifestError,
    RetrySchedule,
    manifest_location,
    parse_manifest,
    read_outcome,
)
from exporter.model import JobUsage

ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefgh1234"
# The example shape of the Bedrock user guide's "View the results of a batch inference job" page.
DOCUMENTED = {
    "totalRecordCount": 100,
    "processedRecordCount": 100,
    "successRecordCount": 98,
    "errorRecordCount": 2,
    "inputTokenCount": 1234,
    "outputTokenCount": 567,
}


def test_documented_manifest_parses_to_exact_usage() -> None:
    usage = parse_manifest(json.dumps(DOCUMENTED).encode(), ARN)
    assert usage == JobUsage(ARN, 1234, 567, records=100, succeeded_records=98, failed_records=2)


def test_record_counts_are_optional_and_unknown_fields_ignored() -> None:
    data = json.dumps({"inputTokenCount": 0, "outputTokenCount": 0, "newField": "x", "nested": {"a": 1}}).encode()
    assert parse_manifest(data, ARN) == JobUsage(ARN, 0, 0)


@pytest.mark.parametrize(
    "value",
    [True, False, 1.0, 12.5, -1, MAX_COUNT + 1, 10**30, "12", None, [1], {"n": 1}],
)
def test_counts_other_than_finite_non_negative_integers_are_refused(value: object) -> None:
    for field in ("inputTokenCount", "successRecordCount"):
        with pytest.raises(MalformedManifestError, match=field):
            parse_manifest(json.dumps({**DOCUMENTED, field: value}).encode(), ARN)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe{}",
        b'{"inputTokenCount": NaN, "outputTokenCount": 1}',
        b'{"inputTokenCount": Infinity, "outputTokenCount": 1}',
        b'{"inputTokenCount": 1e3, "outputTokenCount": 1}',
        b'{"inputTokenCount": 1, "inputTokenCount": 2, "outputTokenCount": 1}',
        b'{"inputTokenCount": 1}',
        b'{"inputTokenCount": ' + b"9" * 5000 + b', "outputTokenCount": 1}',
        b"[" * 100_000,
        # JSON lines (two objects) are not the documented single object
        json.dumps(DOCUMENTED).encode() + b"\n" + json.dumps(DOCUMENTED).encode(),
    ],
)
def test_anything_but_the_documented_object_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedManifestError):
        parse_manifest(raw, ARN)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_usage_or_malformed_never_another_error(raw: bytes) -> None:
    try:
        usage = parse_manifest(raw, ARN)
    except MalformedManifestError:
        return
    assert 0 <= usage.input_tokens <= MAX_COUNT and 0 <= usage.output_tokens <= MAX_COUNT


def test_malformed_is_a_bad_answer_for_the_shared_classification() -> None:
    assert issubclass(MalformedManifestError, BadAnswerError)
    assert issubclass(ObjectTooLargeError, BadAnswerError)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://batch-out/results/", ("batch-out", "results/abcdefgh1234/manifest.json.out")),
        ("s3://batch-out/results", ("batch-out", "results/abcdefgh1234/manifest.json.out")),
        ("s3://batch-out/a/b/c/", ("batch-out", "a/b/c/abcdefgh1234/manifest.json.out")),
        ("s3://batch-out/", ("batch-out", "abcdefgh1234/manifest.json.out")),
        ("s3://batch-out", ("batch-out", "abcdefgh1234/manifest.json.out")),
    ],
)
def test_manifest_is_in_the_job_id_folder_under_the_output_uri(uri: str, expected: tuple[str, str]) -> None:
    assert manifest_location(uri, "abcdefgh1234") == expected


@pytest.mark.parametrize(
    ("uri", "job_id"),
    [
        ("https://batch-out/x/", "abcdefgh1234"),
        ("s3://Batch_Out/x/", "abcdefgh1234"),  # not a bucket name the S3Uri shape accepts
        ("s3://b/x/", "abcdefgh1234"),  # bucket too short
        ("s3://batch-out/../x", "abcdefgh1234"),  # "/.." is allowed by the shape: the key keeps it, no traversal
        ("s3://batch-out/x y/", "abcdefgh1234"),
        ("s3://batch-out/x/", "../etc"),
        ("s3://batch-out/x/", ""),
        ("s3://batch-out/" + "a" * 1100, "abcdefgh1234"),
    ],
)
def test_unusable_locations_are_refused(uri: str, job_id: str) -> None:
    if uri == "s3://batch-out/../x":  # S3 keys are flat strings: ".." is an ordinary key part
        assert manifest_location(uri, job_id) == ("batch-out", "../x/abcdefgh1234/manifest.json.out")
        return
    with pytest.raises(ValueError):
        manifest_location(uri, job_id)


def _client_error(code: str, status: int, message: str = "") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (_client_error("NoSuchKey", 404), NOT_FOUND),
        (_client_error("NoSuchBucket", 404), NOT_FOUND),
        (_client_error("404", 404), NOT_FOUND),
        (_client_error("AccessDenied", 403, "Access Denied"), ACCESS_DENIED),
        (_client_error("AccessDenied", 403, "User is not authorized to perform: kms:Decrypt"), KMS_DENIED),
        (_client_error("KMS.DisabledException", 400, "key disabled"), KMS_DENIED),
        (_client_error("SlowDown", 503), ERROR),
        (_client_error("InternalError", 500), ERROR),
        (ReadTimeoutError(endpoint_url="http://x"), ERROR),
        (ObjectTooLargeError("GetObject too big"), TOO_LARGE),
        (MalformedManifestError("manifest bad"), MALFORMED),
        (ValueError("other"), ERROR),
    ],
)
def test_read_outcomes(exc: BaseException, outcome: str) -> None:
    assert read_outcome(exc) == outcome


def test_retry_schedule_doubles_from_first_retry_up_to_the_cap_then_gives_up() -> None:
    schedule = RetrySchedule(first_retry=60, max_interval=600, give_up_after=3600)
    assert [schedule.next_attempt(1000.0, n) - 1000.0 for n in (1, 2, 3, 4, 5, 6, 1000)] == [
        60,
        120,
        240,
        480,
        600,
        600,
        600,
    ]
    assert not schedule.given_up(ended=0.0, now=3600.0)
    assert schedule.given_up(ended=0.0, now=3600.5)


def test_default_schedule_reads_about_thirty_times_in_a_day() -> None:
    schedule, now, attempts = RetrySchedule(), 0.0, 1
    while not schedule.given_up(0.0, now):
        now = schedule.next_attempt(now, attempts)
        attempts += 1
    assert 25 <= attempts <= 35, attempts
