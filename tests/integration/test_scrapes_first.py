"""The HTTP server counts requests in flight for exporter.priority, over real connections on 127.0.0.1."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from exporter.http import TEXT, MetricsServer, Response, Router
from exporter.priority import ScrapesFirst
from exporter.snapshot import Store

WAIT = 10.0


class SlowPage:
    """/slow answers once `release` is set, noting how many requests were in flight meanwhile."""

    def __init__(self, first: ScrapesFirst) -> None:
        self.first = first
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[int] = []

    def respond(self, target: str) -> Response | None:
        if not target.startswith("/slow"):
            return None
        self.seen.append(self.first.in_flight)
        self.entered.set()
        self.release.wait(WAIT)
        return Response(200, b"slow\n", TEXT)


@pytest.fixture
def served() -> Iterator[tuple[MetricsServer, ScrapesFirst, SlowPage]]:
    first = ScrapesFirst()
    page = SlowPage(first)
    srv = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), None, pages=(page,)), scrapes_first=first)
    srv.start()
    yield srv, first, page
    page.release.set()
    srv.stop()


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_a_request_is_in_flight_from_its_bytes_to_its_answer(
    served: tuple[MetricsServer, ScrapesFirst, SlowPage],
) -> None:
    srv, first, page = served
    host, port = srv.server_address
    conn = http.client.HTTPConnection(host, port, timeout=WAIT)
    conn.request("GET", "/healthz")  # keep-alive: the connection is parked between requests
    assert conn.getresponse().read() == b"ok\n"
    _until(lambda: first.in_flight == 0, "a served request ends its flight")
    answers: list[bytes] = []
    slow = threading.Thread(target=lambda: (conn.request("GET", "/slow"), answers.append(conn.getresponse().read())))
    slow.start()
    assert page.entered.wait(WAIT)
    assert page.seen == [1] and first.in_flight == 1
    page.release.set()
    slow.join(WAIT)
    assert answers == [b"slow\n"]
    _until(lambda: first.in_flight == 0, "the answered request ends its flight")
    conn.close()


@pytest.mark.parametrize(
    "sent",
    [b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n", b"GET /heal", b"\x16\x03\x01\x00\xa5garbage"],
    ids=["malformed", "cut-short", "tls-on-plain"],
)
def test_broken_requests_end_their_flight(served: tuple[MetricsServer, ScrapesFirst, SlowPage], sent: bytes) -> None:
    srv, first, _ = served
    with socket.create_connection(srv.server_address, timeout=WAIT) as sock:
        sock.sendall(sent)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):  # until the server answers and closes, or just closes
            pass
    _until(lambda: first.in_flight == 0, "a broken request must not stay in flight")


def test_stopping_the_server_clears_what_was_in_flight(served: tuple[MetricsServer, ScrapesFirst, SlowPage]) -> None:
    srv, first, page = served
    sock = socket.create_connection(srv.server_address, timeout=WAIT)
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert page.entered.wait(WAIT)
    assert first.in_flight == 1
    srv.stop()  # the worker is still inside the page: its request will not end before the process does
    assert first.in_flight == 0
    page.release.set()
    sock.close()
