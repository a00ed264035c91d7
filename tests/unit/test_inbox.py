"""The HTTP front's per-connection inbox: when a request is whole, and reading it as cheroot does."""

from __future__ import annotations

import pytest

from exporter.http import _INBOX_LIMIT, MAX_HEADER_BYTES, MAX_REQUEST_BODY, _Inbox


def inbox_of(*chunks: bytes) -> _Inbox:
    inbox = _Inbox()
    for chunk in chunks:
        inbox.feed(chunk)
    return inbox


@pytest.mark.parametrize(
    ("chunks", "whole"),
    [
        ((b"GET / HTTP/1.1\r\nHost: x\r\n",), False),
        ((b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",), True),
        ((b"GET / HTTP/1.1\r\nHost: x\r", b"\n", b"\r", b"\n"), True),  # the end split across reads
        ((b"POST /-/reload HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc",), False),
        ((b"POST /-/reload HTTP/1.1\r\ncontent-LENGTH:  5 \r\n\r\nabcde",), True),
        ((b"POST /-/reload HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",), True),  # refused at once
        ((b"POST /-/reload HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_REQUEST_BODY + 1),), True),  # 413 at once
        ((b"GET / HTTP/1.1\n\n",), True),  # bare LF: the strict parser answers 400 at once
        ((b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEADER_BYTES,), True),  # too long to wait for: 413/414
        ((b"",), False),
    ],
)
def test_whole(chunks: tuple[bytes, ...], whole: bool) -> None:
    assert inbox_of(*chunks).whole() is whole


def test_a_length_in_the_body_or_an_earlier_request_does_not_count() -> None:
    inbox = inbox_of(b"GET /a HTTP/1.1\r\nContent-Length: 30\r\n\r\n" + b"b" * 30)
    assert inbox.whole()
    inbox.read(len(b"GET /a HTTP/1.1\r\nContent-Length: 30\r\n\r\n") + 30)  # the handler took the first request
    inbox.feed(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert inbox.whole()  # its own head has no length: whole without a body


def test_reads_as_a_file_and_answers_end_of_file_past_the_end() -> None:
    inbox = inbox_of(b"GET / HTTP/1.1\r\n", b"Host: x\r\n\r\nrest")
    assert inbox.readline() == b"GET / HTTP/1.1\r\n"
    assert inbox.readline(4) == b"Host"
    assert inbox.readline() == b": x\r\n"
    assert list(inbox) == [b"\r\n", b"rest"]
    assert inbox.read() == b"" and inbox.readline() == b"" and not inbox.has_data()


def test_compacts_what_was_read() -> None:
    inbox = _Inbox()
    for _ in range(1000):
        inbox.feed(b"x" * 100)
        assert inbox.read(99) == b"x" * 99  # one byte stays each time: the buffer is never simply emptied
    assert len(inbox) == 1000
    assert len(inbox._data) <= 2 * (1000 + 100)  # held bytes, not everything that went through
    assert _INBOX_LIMIT == MAX_HEADER_BYTES + MAX_REQUEST_BODY


def test_pending_tls_bytes_count_as_data() -> None:
    assert _Inbox(lambda: 5).has_data() and not _Inbox(lambda: 0).has_data()
