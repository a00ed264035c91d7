"""exporter.http.send_parts: a response's parts in one system call while the client keeps up, over real sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from exporter.http import send_parts


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


def test_parts_arrive_whole_and_in_order_and_the_timeout_is_kept(
    connected: tuple[socket.socket, socket.socket],
) -> None:
    server, client = connected
    server.settimeout(10.0)
    # Larger than any socket buffer: the kernel takes it while the client reads.
    parts = [b"HTTP/1.1 200 OK\r\n\r\n", bytes(range(256)) * 20_000, b"", b"tail\n" * 1000]
    expected = b"".join(parts)
    got = bytearray()
    reader = threading.Thread(target=_read_all, args=(client, len(expected), got))
    reader.start()
    send_parts(server, parts)
    reader.join(30)
    assert bytes(got) == expected
    assert server.gettimeout() == 10.0  # the socket is back in timeout mode for cheroot's next read
    assert server.getblocking()


def test_a_client_that_stops_reading_gets_a_timeout_not_a_hang(connected: tuple[socket.socket, socket.socket]) -> None:
    server, client = connected
    server.settimeout(0.3)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with pytest.raises(OSError):  # TimeoutError is an OSError; the client never reads a byte
        send_parts(server, [b"x" * (16 << 20)])
    assert server.gettimeout() == 0.3


def test_nothing_to_send_sends_nothing(connected: tuple[socket.socket, socket.socket]) -> None:
    server, client = connected
    server.settimeout(1.0)
    send_parts(server, [])
    send_parts(server, [b"", b""])
    send_parts(server, [b"done"])
    assert client.recv(16) == b"done"


def test_a_blocking_socket_sends_the_ordinary_way(connected: tuple[socket.socket, socket.socket]) -> None:
    server, client = connected
    server.settimeout(None)  # no timeout to carry over: plain sendall
    send_parts(server, [b"a", b"b"])
    got = bytearray()
    _read_all(client, 2, got)
    assert bytes(got) == b"ab"
