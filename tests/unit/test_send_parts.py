"""exporter.http.send_some: what the socket takes now, never waiting, over real sockets."""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Iterator

import pytest

from exporter.http import send_some


@pytest.fixture
def connected() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, client side) of a TCP connection on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, _ = listener.accept()
    try:
        yield server, client
    finally:
        server.close()
        client.close()


def _read_all(sock: socket.socket, size: int, into: bytearray) -> None:
    while len(into) < size:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return
        into.extend(chunk)


def views(*parts: bytes) -> deque[memoryview]:
    return deque(memoryview(part) for part in parts if part)


def test_parts_arrive_whole_and_in_order_and_the_timeout_is_kept(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    server, client = connected
    server.settimeout(10.0)
    # Larger than any socket buffer: sent in rounds while the client reads, each round taking what fits.
    parts = [b"HTTP/1.1 200 OK\r\n\r\n", bytes(range(256)) * 20_000, b"", b"tail\n" * 1000]
    expected = b"".join(parts)
    got = bytearray()
    reader = threading.Thread(target=_read_all, args=(client, len(expected), got))
    reader.start()
    left = views(*parts)
    for _ in range(100_000):  # bounded; each round sends what the socket takes
        send_some(server, left)
        if not left:
            break
        threading.Event().wait(0.001)
    reader.join(30)
    assert bytes(got) == expected
    assert server.gettimeout() == 10.0  # the socket is back in timeout mode for cheroot's next read
    assert server.getblocking()


def test_a_client_that_stops_reading_leaves_the_rest_unsent_at_once(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    server, client = connected
    server.settimeout(5.0)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    left = views(b"x" * (16 << 20))
    send_some(server, left)  # returns at once: never waits for the client
    assert left and 0 < sum(len(v) for v in left) < 16 << 20
    assert server.gettimeout() == 5.0


def test_nothing_to_send_sends_nothing(connected: tuple[socket.socket, socket.socket]) -> None:
    server, client = connected
    server.settimeout(1.0)
    for parts in ((), (b"", b""), (b"done",)):
        left = views(*parts)
        send_some(server, left)
        assert not left
    assert client.recv(16) == b"done"
