"""A size cap on every AWS answer a client reads: past it, the read stops and the call fails as a bad answer.

botocore reads a whole answer into memory before parsing it (`AWSResponse.content`, joined from the urllib3
response's `stream()`), so one endless or 50 MB answer would cost the process that much and more. The cap sits in
the client's HTTP session, where the bytes arrive: an answer whose `Content-Length` is over the cap is refused
unread, one without a length stops being read at the first chunk past it. Streaming answers (S3 GetObject) are left
to their reader, which has its own cap (`exporter/aws/s3.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from exporter.errors import BadAnswerError

_CHUNK = 64 * 1024


class _Operation(threading.local):
    name = "call"


class _CappedBody:
    """The urllib3 response botocore reads, yielding its chunks until more than `limit` bytes came."""

    def __init__(self, raw: Any, limit: int, operation: str) -> None:
        self._raw = raw
        self._limit = limit
        self._operation = operation

    def stream(self, amt: int = _CHUNK, decode_content: bool | None = None) -> Iterator[bytes]:
        total = 0
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            total += len(chunk)
            if total > self._limit:
                self._raw.close()  # the rest is never read; the connection is not reused
                raise BadAnswerError(
                    f"{self._operation} answer is over the {self._limit}-byte cap (aws.max_answer_bytes)"
                )
            yield chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _CappedSession:
    """A botocore HTTP session whose answers are read through `_CappedBody`."""

    def __init__(self, inner: Any, limit: int, operation: _Operation) -> None:
        self._inner = inner
        self._limit = limit
        self._operation = operation

    def send(self, request: Any) -> Any:
        streamed = bool(getattr(request, "stream_output", False))
        if streamed:  # S3 GetObject: its reader caps it
            return self._inner.send(request)
        # botocore's session reads a non-streaming answer whole before returning it; asked for a stream, it
        # returns unread, and botocore's endpoint reads `content` from our capped body instead.
        request.stream_output = True
        try:
            response = self._inner.send(request)
        finally:
            request.stream_output = streamed
        name = self._operation.name
        length = str(response.headers.get("Content-Length", ""))
        if length.isdigit() and int(length) > self._limit:
            response.raw.close()
            raise BadAnswerError(
                f"{name} answer is {int(length)} bytes, over the {self._limit}-byte cap (aws.max_answer_bytes)"
            )
        response.raw = _CappedBody(response.raw, self._limit, name)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def cap_answers(client: Any, limit: int) -> bool:
    """Cap the answers `client` reads at `limit` bytes; False (and uncapped) if botocore's layout is not the known one.

    The operation's name comes from botocore's public `before-send` event, the session from the client's endpoint
    (`_endpoint.http_session`: botocore has no public hook between the bytes and the parser).
    """
    endpoint: Any = getattr(client, "_endpoint", None)
    inner = getattr(endpoint, "http_session", None)
    if inner is None or not callable(getattr(inner, "send", None)):
        return False
    operation = _Operation()

    def note(event_name: str, **_: Any) -> None:
        operation.name = event_name.rsplit(".", 1)[-1]

    client.meta.events.register("before-send", note)
    endpoint.http_session = _CappedSession(inner, limit, operation)
    return True
