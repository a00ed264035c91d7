"""Hostile HTTP against the real server on 127.0.0.1: idle floods, concurrency, smuggling, malformed input, shutdown.

After each attack the server must still answer /healthz within 1 s, and neither the log nor stderr may hold a
traceback.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import re
import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest

import exporter.http
from exporter.http import MAX_CONNECTIONS, MAX_PER_CLIENT, SECURITY_HEADERS, WORKERS, MetricsServer, Router
from exporter.snapshot import Store
from exporter.webconfig import BasicAuth
from tests.conftest import self_signed_certificate

BODY = b"".join(b'demo_series{n="%d"} 1\n' % i for i in range(2000))


class FakeExposition:
    """A fixed /metrics body (the Router's MetricsBody protocol)."""

    def parts(self, gzip: bool = False) -> tuple[bytes, ...]:
        return BODY[:1000], BODY[1000:]  # two parts, as the Exposition sends them


BIG = b"".join(b'big_series{n="%d"} 1\n' % i for i in range(100_000))  # ~2.2 MB, more than socket buffers take


class BigExposition:
    def parts(self, gzip: bool = False) -> tuple[bytes, ...]:
        return (BIG,)


class Reloads:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> tuple[bool, str]:
        self.calls += 1
        return True, "config reloaded"


@pytest.fixture
def clean_log(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Fails the test if anything logged or written to stderr holds a traceback."""
    caplog.set_level(logging.DEBUG)
    yield
    assert not any(record.exc_info for record in caplog.records)
    assert "Traceback" not in caplog.text
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture
def reloads() -> Reloads:
    return Reloads()


@pytest.fixture
def server(clean_log: None, reloads: Reloads) -> Iterator[MetricsServer]:
    srv = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), FakeExposition(), reload=reloads))
    srv.start()
    yield srv
    srv.stop()


def healthz_within_a_second(srv: MetricsServer) -> None:
    host, port = srv.server_address
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=1)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"ok\n")
    conn.close()
    assert time.monotonic() - started < 1.0


def exchange(srv: MetricsServer, data: bytes, timeout: float = 3.0) -> bytes:
    """Send raw bytes, then read until the server closes or goes quiet (bounded by `timeout`)."""
    with socket.create_connection(srv.server_address, timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            if out.count(b"\r\n\r\n") and b"Connection: close" in out:
                sock.settimeout(0.2)  # the answer is complete; wait briefly for the close
        return out


def connect_from(srv: MetricsServer, index: int, timeout: float = 5) -> socket.socket:
    """A connection from one of 200 loopback addresses (127.0.1.0-199), so the per-address cap does not apply."""
    return socket.create_connection(srv.server_address, timeout=timeout, source_address=(f"127.0.1.{index % 200}", 0))


def health_and_metrics_answer(srv: MetricsServer, metrics_size: int) -> None:
    """A normal client's /healthz, /metrics and /healthz again, each on a new connection, answered whole."""
    host, port = srv.server_address
    for path, size in (("/healthz", 3), ("/metrics", metrics_size), ("/healthz", 3)):
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", path)
        response = conn.getresponse()
        assert (response.status, len(response.read())) == (200, size)
        conn.close()


def server_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(("CP Server", "http")))


def test_idle_connections_cost_no_threads_and_health_still_answers(server: MetricsServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2000 + MAX_CONNECTIONS + 200
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    before = threading.active_count()
    idle: list[socket.socket] = []
    try:
        for index in range(2000):
            idle.append(connect_from(server, index))
        deadline = time.monotonic() + 10
        while server.open_connections != MAX_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.open_connections == MAX_CONNECTIONS  # capped: the longest-idle made room for newer ones
        assert threading.active_count() <= before + 2  # no thread per connection
        assert server_threads() <= WORKERS + 2
        healthz_within_a_second(server)
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    healthz_within_a_second(server)


def test_two_hundred_concurrent_scrapes_complete(server: MetricsServer) -> None:
    host, port = server.server_address

    def scrape(gzip: bool) -> tuple[int, int]:
        conn = http.client.HTTPConnection(host, port, timeout=20)
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"} if gzip else {})
        response = conn.getresponse()
        size = len(response.read())
        conn.close()
        return response.status, size

    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(scrape, [i % 2 == 0 for i in range(200)], timeout=60))
    assert answers == [(200, len(BODY))] * 200
    assert server_threads() <= WORKERS + 2
    healthz_within_a_second(server)


def test_a_gets_body_is_never_executed_as_a_request(server: MetricsServer, reloads: Reloads) -> None:
    hidden = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    smuggle = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(hidden), hidden)
    follow = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = exchange(server, smuggle + follow)
    assert answer.count(b"HTTP/1.1 ") == 2, answer
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 503" in answer  # /healthz, then /readyz
    assert reloads.calls == 0
    # The same with a chunked body: the connection closes rather than parse what follows.
    chunked = b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        len(hidden),
        hidden,
    )
    answer = exchange(server, chunked + hidden)
    assert answer.count(b"HTTP/1.1 ") == 1 and reloads.calls == 0
    healthz_within_a_second(server)


def test_http_0_9_gets_no_headerless_answer(server: MetricsServer) -> None:
    answer = exchange(server, b"GET /metrics\r\n")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert BODY[:20] not in answer
    healthz_within_a_second(server)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nNo-Colon-Here\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded: continuation\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n folded-first: line\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
        b"GET /healthz HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /-/reload HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nAuthorization: Basic é\r\n\r\n".encode(),
        b"GET /healthz HTTP/1.1\r\nAuthorization: Basic \xff\xfe\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: " + b"x" * 40_000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\n\n",
        b"get /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello to the plain port
    ],
)
def test_malformed_requests_get_400_or_a_clean_close(server: MetricsServer, request_bytes: bytes) -> None:
    answer = exchange(server, request_bytes)
    status = answer[9:12]
    assert answer == b"" or status in (b"400", b"413", b"414", b"505"), answer[:300]
    if answer:
        assert all(f"{name}: {value}".encode() in answer for name, value in SECURITY_HEADERS.items())
    healthz_within_a_second(server)


def test_non_ascii_credentials_get_400_with_auth_on(clean_log: None) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    srv = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), None, auth=BasicAuth({"p": hashed})))
    srv.start()
    try:
        answer = exchange(srv, "GET /healthz HTTP/1.1\r\nAuthorization: Basic ü\r\nConnection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 400 ")
        good = "Basic " + base64.b64encode(b"p:pw").decode()
        answer = exchange(srv, f"GET /healthz HTTP/1.1\r\nAuthorization: {good}\r\nConnection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        srv.stop()


def test_unknown_methods_get_405_with_allow(server: MetricsServer) -> None:
    for method in (b"BREW", b"PUT", b"DELETE", b"TRACE"):
        answer = exchange(server, method + b" /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: GET, HEAD\r\n" in answer


def tls_server(tmp_path: Path, exposition: FakeExposition | BigExposition | None = None) -> tuple[MetricsServer, Path]:
    """A started HTTPS server with a fresh self-signed certificate, and that certificate's file."""
    cert_file, key_file = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    srv = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), exposition), tls=context)
    srv.start()
    return srv, cert_file


def test_a_slow_tls_client_does_not_stall_the_others(clean_log: None, tmp_path: Path) -> None:
    srv, cert_file = tls_server(tmp_path)
    silent = [socket.create_connection(srv.server_address, timeout=5) for _ in range(WORKERS // 2)]
    try:
        client = ssl.create_default_context(cafile=str(cert_file))
        started = time.monotonic()
        conn = http.client.HTTPSConnection("localhost", srv.server_address[1], timeout=2, context=client)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        assert time.monotonic() - started < 1.0
        conn.close()
        with socket.create_connection(srv.server_address, timeout=3) as plain:  # plain HTTP to the TLS port
            plain.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert b"ok" not in plain.recv(1024)
    finally:
        for sock in silent:
            sock.close()
        srv.stop()


def test_stop_returns_within_two_seconds_with_clients_attached(clean_log: None) -> None:
    srv = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), FakeExposition()))
    srv.start()
    idle = [socket.create_connection(srv.server_address, timeout=5) for _ in range(50)]
    stalled = [socket.create_connection(srv.server_address, timeout=5) for _ in range(WORKERS - 2)]
    for sock in stalled:  # half a request line: each holds a worker in a blocking read until stop()
        sock.sendall(b"GET /metr")
    keep_alive = http.client.HTTPConnection(*srv.server_address, timeout=5)
    keep_alive.request("GET", "/healthz")
    keep_alive.getresponse().read()
    try:
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 2.0
        with pytest.raises(OSError):
            socket.create_connection(srv.server_address, timeout=1).close()
    finally:
        for sock in idle + stalled:
            sock.close()
        keep_alive.close()


def _send_slowly(socks: list[socket.socket], rounds: int, data: bytes = b"X-Slow: a\r\n") -> None:
    """A byte to every socket per round, round after round: slow clients that never finish their heads."""
    for index in range(rounds):
        byte = data[index % len(data) : index % len(data) + 1]
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.sendall(byte)


def test_slow_clients_hold_no_worker_and_health_and_metrics_answer(server: MetricsServer) -> None:
    # 256 clients (16 per address) each sending a request head a byte at a time: before the front, 16 of them held
    # every worker and a normal request timed out. Now the workers never see them.
    before = threading.active_count()
    slow = [connect_from(server, index % 16) for index in range(256)]
    try:
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        _send_slowly(slow, 3)
        health_and_metrics_answer(server, len(BODY))
        _send_slowly(slow, 3)
        assert server.open_connections >= 256  # the slow clients are still connected: answered in spite of them
        assert threading.active_count() <= before + 1 and server_threads() <= WORKERS + 2
    finally:
        for sock in slow:
            sock.close()


def test_a_request_not_whole_by_the_deadline_is_closed(server: MetricsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A byte every 50 ms never trips a timeout per read; the deadline counts from the first byte.
    monkeypatch.setattr(exporter.http, "REQUEST_DEADLINE", 0.3)
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(b"G")
        sent = 1
        closed = False
        sock.settimeout(0.05)
        for index in range(400):  # 20 s of trickling at most; the deadline (and the 0.5 s sweep) is well within
            try:
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except OSError:
                closed = True
                break
            try:
                sock.sendall(b"ET /healthz HTTP/1.1\r\nX-Slow: "[index % 10 : index % 10 + 1])
                sent += 1
            except OSError:
                closed = True
                break
        assert closed and sent < 400
    healthz_within_a_second(server)


def test_one_address_cannot_take_every_connection(server: MetricsServer) -> None:
    crowd = [connect_from(server, 7) for _ in range(MAX_PER_CLIENT + 40)]
    try:
        others = [connect_from(server, 8) for _ in range(10)]
        deadline = time.monotonic() + 10
        while server.open_connections != MAX_PER_CLIENT + 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.open_connections == MAX_PER_CLIENT + 10  # the crowd's oldest made room for its newest
        # The same address still gets answers (its own longest-idle connection makes room), and so do the others.
        conn = http.client.HTTPConnection(*server.server_address, timeout=5, source_address=("127.0.1.7", 0))
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok\n"
        conn.close()
        others[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert others[0].recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in crowd + others:
            sock.close()


def test_a_body_is_held_whole_before_the_request_is_served(server: MetricsServer, reloads: Reloads) -> None:
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):  # half a body: nothing is answered, nothing is reloaded
            sock.recv(4096)
        assert reloads.calls == 0
        sock.settimeout(5)
        sock.sendall(b"world")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        assert reloads.calls == 1


def test_a_request_sent_before_a_half_close_is_still_answered(server: MetricsServer) -> None:
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        for _ in range(100):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok\n")


def test_pipelined_requests_are_answered_in_order(server: MetricsServer) -> None:
    requests = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path for path in (b"/healthz", b"/readyz", b"/nope"))
    answer = exchange(server, requests + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses == [b"200", b"503", b"404", b"200"]


def test_a_chunked_request_gets_411(server: MetricsServer, reloads: Reloads) -> None:
    answer = exchange(server, b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ") and reloads.calls == 0


def test_slow_tls_hellos_hold_no_worker(clean_log: None, tmp_path: Path) -> None:
    srv, cert_file = tls_server(tmp_path)
    # A ClientHello's first bytes (record header, handshake type), never the rest: 4 clients per worker.
    slow = [connect_from(srv, index % 8) for index in range(WORKERS * 4)]
    try:
        for sock in slow:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01")
        client = ssl.create_default_context(cafile=str(cert_file))
        for _ in range(3):
            conn = http.client.HTTPSConnection("localhost", srv.server_address[1], timeout=5, context=client)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b"ok\n"
            conn.close()
    finally:
        for sock in slow:
            sock.close()
        srv.stop()


@pytest.fixture
def big_server(clean_log: None) -> Iterator[MetricsServer]:
    srv = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), BigExposition()))
    srv.start()
    yield srv
    srv.stop()


def _non_reader(srv: MetricsServer, index: int, requests: int = 3) -> socket.socket:
    """A client that asks for /metrics (pipelined) and never reads, with a receive window of 4 KiB."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.bind((f"127.0.1.{index % 200}", 0))
    sock.connect(srv.server_address)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * requests)
    return sock


def test_clients_that_do_not_read_their_answers_hold_no_worker(big_server: MetricsServer) -> None:
    before = threading.active_count()
    stuck = [_non_reader(big_server, index) for index in range(WORKERS * 2)]
    try:
        health_and_metrics_answer(big_server, len(BIG))
        assert threading.active_count() <= before + 1 and server_threads() <= WORKERS + 2
    finally:
        for sock in stuck:
            sock.close()


def _beyond_send_buffers() -> bytes:
    """An answer larger than the kernel lets a socket's send buffer grow (tcp_wmem's maximum, twice over): whatever
    the buffers do, part of it waits in the front, so the send timeout is what closes the connection."""
    try:
        most = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        most = 4 * 1024 * 1024
    return b"big 1\n" * (2 * most // 6 + 1)


def test_a_client_that_takes_nothing_for_the_send_timeout_is_closed(
    clean_log: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporter.http, "SEND_TIMEOUT", 0.3)
    body = _beyond_send_buffers()

    class Huge:
        def parts(self, gzip: bool = False) -> tuple[bytes, ...]:
            return (body,)

    srv = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), Huge()))
    srv.start()
    sock = _non_reader(srv, 3, requests=1)
    try:
        deadline = time.monotonic() + 10  # the sweep runs every 0.5 s: closed well within this
        while srv.open_connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.open_connections == 0
    finally:
        sock.close()
        srv.stop()


def test_a_slow_reader_gets_every_answer_whole_on_its_connection(big_server: MetricsServer) -> None:
    # Answers the front finishes writing: both, in order, and the connection then closes as the last one asked.
    sock = _non_reader(big_server, 4, requests=1)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.2)  # let the first answer fill the window; the rest waits in the front
    got = bytearray()
    for _ in range(100_000):  # bounded: ~4.5 MB in 4 KiB reads
        chunk = sock.recv(4096)
        if not chunk:
            break
        got.extend(chunk)
    sock.close()
    assert got.count(b"HTTP/1.1 200 OK") == 2 and got.count(BIG) == 2
    assert got.endswith(BIG)


def test_tls_answers_too_big_for_the_socket_are_written_whole_by_the_front(clean_log: None, tmp_path: Path) -> None:
    srv, cert_file = tls_server(tmp_path, BigExposition())
    client = ssl.create_default_context(cafile=str(cert_file))
    stuck = []
    try:
        for index in range(WORKERS * 2):  # TLS clients that ask and never read
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.settimeout(5)
            raw.bind((f"127.0.1.{index % 200}", 0))
            raw.connect(srv.server_address)
            wrapped = client.wrap_socket(raw, server_hostname="localhost")
            wrapped.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            stuck.append(wrapped)
        conn = http.client.HTTPSConnection("localhost", srv.server_address[1], timeout=5, context=client)
        conn.request("GET", "/metrics")
        assert conn.getresponse().read() == BIG
        conn.close()
    finally:
        for sock in stuck:
            sock.close()
        srv.stop()
