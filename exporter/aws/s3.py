"""S3 reads: one small object (a batch job's `manifest.json.out`) through GetObject, with a byte cap."""

from __future__ import annotations

import time
from typing import Any

from exporter.errors import BadAnswerError

CHUNK = 8192
READ_SECONDS = 30.0  # a body that dribbles in slower than this is given up (the client's read timeout is per recv)


class ObjectTooLargeError(BadAnswerError):
    """The object is bigger than the cap: refused unread (a manifest is a few hundred bytes)."""


def read_manifest(
    client: Any,
    bucket: str,
    key: str,
    expected_owner: str | None,
    max_bytes: int,
) -> bytes:
    """The object's bytes, at most `max_bytes` (ObjectTooLargeError past that); the body is always closed.

    Raises botocore's ClientError as S3 answered it (AccessDenied, NoSuchKey, ...), BadAnswerError for an answer
    without a body or a body that does not arrive in READ_SECONDS.
    """
    params: dict[str, str] = {"Bucket": bucket, "Key": key}
    if expected_owner:
        # botocore's s3 model, GetObjectRequest.ExpectedBucketOwner: S3 answers 403 AccessDenied when the bucket
        # belongs to another account, so a bucket re-created by someone else is never read.
        params["ExpectedBucketOwner"] = expected_owner
    answer = client.get_object(**params)
    body = answer.get("Body") if isinstance(answer, dict) else None
    if body is None:
        raise BadAnswerError(f"GetObject answer for s3://{bucket}/{key} has no Body")
    try:
        length = answer.get("ContentLength")
        if isinstance(length, int) and not isinstance(length, bool) and length > max_bytes:
            raise ObjectTooLargeError(f"GetObject s3://{bucket}/{key} is {length} bytes, over the {max_bytes} cap")
        return _read_capped(body, bucket, key, max_bytes, time.monotonic() + READ_SECONDS)
    finally:
        body.close()  # also when refused unread: the connection is dropped rather than drained


def _read_capped(body: Any, bucket: str, key: str, max_bytes: int, deadline: float) -> bytes:
    """At most max_bytes + 1 bytes of `body` (one more than allowed proves it is too large)."""
    parts: list[bytes] = []
    got = 0
    while got <= max_bytes:
        chunk = body.read(min(CHUNK, max_bytes + 1 - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
        if time.monotonic() > deadline:
            raise BadAnswerError(f"GetObject s3://{bucket}/{key}: the body did not arrive in time")
    if got > max_bytes:
        raise ObjectTooLargeError(f"GetObject s3://{bucket}/{key} is over the {max_bytes} byte cap")
    return b"".join(parts)
