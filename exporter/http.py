"""The HTTP front door: routing, auth and security headers (`Router`), behind a thin server adapter.

`Router.handle` knows nothing of the server library: it takes a method, a request target, headers and a body reader,
and returns a `Response`. `MetricsServer` adapts one server library to it (cheroot, through WSGI), so the library
can change alone.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import re
import selectors
import socket
import ssl
import sys
import threading
import time
import traceback as tb_module
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

from cheroot.errors import FatalSSLAlert
from cheroot.makefile import StreamWriter
from cheroot.server import HeaderReader, HTTPConnection, HTTPRequest
from cheroot.wsgi import Server as WsgiServer

from exporter import __version__
from exporter.snapshot import Store
from exporter.webconfig import BasicAuth

log = logging.getLogger(__name__)

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
MAX_REQUEST_BODY = 4 * 1024  # POST /-/reload reads and ignores its body; the front holds it whole before a worker

# Sent with every response: the status page loads only its own stylesheet and script.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)
    more: tuple[bytes, ...] = ()  # sent after `body`, part of the same answer (a large body is not copied into one)

    @property
    def length(self) -> int:
        return len(self.body) + sum(len(part) for part in self.more)


class MetricsBody(Protocol):
    """What serves the /metrics body (the Prometheus sink's Exposition)."""

    def parts(self, gzip: bool = False) -> tuple[bytes, ...]: ...


class PageSource(Protocol):
    """A sink that answers some paths (the status page): a Response, or None when the path is not its own."""

    def respond(self, target: str) -> Response | None: ...


ReloadHook = Callable[[], tuple[bool, str]]


class Headers(Protocol):
    """Request headers, looked up case-insensitively (email.message.Message, or a dict of lower-cased names)."""

    def get(self, name: str, default: Any = None, /) -> Any: ...


class Router:
    """Every path the exporter serves; one instance per server, shared by its request threads."""

    def __init__(
        self,
        store: Store,
        exposition: MetricsBody | None,
        metrics_path: str = "/metrics",
        *,
        pages: tuple[PageSource, ...] = (),
        auth: BasicAuth | None = None,
        reload: ReloadHook | None = None,
        health_without_auth: bool = False,
    ) -> None:
        self.store = store
        self.open_paths = frozenset(("/healthz", "/readyz")) if health_without_auth else frozenset()
        self.exposition = exposition  # None: metrics are pushed over OTLP only, /metrics answers 404
        self.metrics_path = metrics_path
        self.pages = pages
        self.auth = auth
        self.reload = reload

    def handle(self, method: str, target: str, headers: Headers, read_body: Callable[[int], bytes]) -> Response:
        """The answer to one request; `headers` are looked up case-insensitively by the adapter."""
        authorization = headers.get("Authorization")
        if authorization is not None and not str(authorization).isascii():  # credentials are base64: ASCII only
            return Response(400, b"malformed Authorization header\n", TEXT)
        path = target.split("?", 1)[0]
        if (
            self.auth is not None
            and not (path in self.open_paths and method in ("GET", "HEAD"))
            and not self.auth.check(headers.get("Authorization"))
        ):
            return Response(401, b"unauthorized\n", TEXT, {"WWW-Authenticate": 'Basic realm="bedrock-batch-exporter"'})
        if method == "POST":
            return self._post(path, headers, read_body)
        if method not in ("GET", "HEAD"):
            return self._not_allowed(path)
        if path == "/healthz":
            return Response(200, b"ok\n", TEXT)
        if path == "/readyz":
            if self.store.snapshot.ready:
                return Response(200, b"ready\n", TEXT)
            return Response(503, b"not ready: no successful poll cycle yet\n", TEXT)
        if path == self.metrics_path:
            if self.exposition is None:
                return Response(404, b"not found: metrics are pushed over OTLP in this mode\n", TEXT)
            gzip = accepts_gzip(headers.get("Accept-Encoding", ""))
            extra = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzip else {"Vary": "Accept-Encoding"}
            first, *more = self.exposition.parts(gzip=gzip)
            return Response(200, first, CONTENT_TYPE_METRICS, extra, tuple(more))
        for page in self.pages:
            answer = page.respond(target)
            if answer is not None:
                return answer
        return Response(404, b"not found\n", TEXT)

    def _post(self, path: str, headers: Headers, read_body: Callable[[int], bytes]) -> Response:
        if path != "/-/reload" or self.reload is None:
            return self._not_allowed(path)
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            return Response(400, b"bad Content-Length\n", TEXT)
        if length < 0:
            return Response(400, b"bad Content-Length\n", TEXT)
        if length > MAX_REQUEST_BODY:
            return Response(413, b"request body too large\n", TEXT)
        read_body(length)
        ok, message = self.reload()
        return Response(200 if ok else 400, (message + "\n").encode(), TEXT)

    def _not_allowed(self, path: str) -> Response:
        allowed = "GET, HEAD, POST" if path == "/-/reload" and self.reload is not None else "GET, HEAD"
        return Response(405, b"method not allowed\n", TEXT, {"Allow": allowed})


_QVALUE = re.compile(r"q=(0(\.\d{0,3})?|1(\.0{0,3})?)", re.IGNORECASE)  # RFC 9110 section 12.4.2


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value lets us send gzip (RFC 9110 section 12.5.3: q=0 refuses a coding).

    gzip (or x-gzip, its alias) is used when its weight, or else the weight of `*`, is above 0 and not below an
    explicit weight for identity (or `*`); an unlisted coding is not acceptable. A bad weight drops its element.
    """
    weights: dict[str, float] = {}
    for element in header.split(","):
        coding, *params = (part.strip() for part in element.split(";"))
        if not coding:
            continue
        weight = 1.0
        for param in params:
            match = _QVALUE.fullmatch(param.replace(" ", ""))
            if match is None:
                weight = -1.0  # not a weight we can read: ignore the element rather than guess
                break
            weight = float(match.group(1))
        if weight >= 0:
            name = coding.lower()
            name = "gzip" if name == "x-gzip" else name
            weights[name] = max(weight, weights.get(name, 0.0))
    star = weights.get("*")
    gzip = weights.get("gzip", star if star is not None else 0.0)
    identity = weights.get("identity", star)
    return gzip > 0 and (identity is None or gzip >= identity)


WORKERS = 16  # fixed pool: request handling never grows a thread per connection
MAX_CONNECTIONS = 1024  # open connections, idle or busy; at the cap the longest-idle one makes room
MAX_PER_CLIENT = 64  # open connections from one client address; above it, that address's longest-idle makes room
LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn
IDLE_TIMEOUT = 30  # a keep-alive connection with no request for this long is closed
REQUEST_DEADLINE = 10.0  # from a request's first byte (or a TLS hello) until it is whole: slow or not, then closed
SEND_TIMEOUT = 10.0  # a client that takes no byte of its answer for this long is closed (the front writes it)
MAX_HEADER_BYTES = 32 * 1024  # request line plus headers
_INBOX_LIMIT = MAX_HEADER_BYTES + MAX_REQUEST_BODY  # bytes held per connection before a worker takes it
MAX_HEADER_LINES = 100
_IOV_MAX = 1024  # Linux UIO_MAXIOV: buffers one sendmsg takes
STOP_TIMEOUT = 1  # seconds for the workers to finish; stop() returns within 2 s in all

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2 field-name
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # RFC 9110 section 5.5: CTLs other than HTAB
_SINGLETONS = frozenset({b"Content-Length", b"Transfer-Encoding", b"Host", b"Authorization"})
_CRLF = b"\r\n"


class _StrictHeaderReader(HeaderReader):
    """RFC 9112 header parsing that refuses what a lenient parser would guess at (folding, bad names, repeats)."""

    def __call__(self, rfile: Any, hdict: dict[bytes, bytes] | None = None) -> dict[bytes, bytes]:
        headers: dict[bytes, bytes] = {} if hdict is None else hdict
        for _ in range(MAX_HEADER_LINES + 1):
            line = rfile.readline()
            if not line:
                raise ValueError("Illegal end of headers.")
            if line == _CRLF:
                return headers
            if not line.endswith(_CRLF):
                raise ValueError("HTTP requires CRLF terminators")
            if line[:1] in (b" ", b"\t"):  # obs-fold: RFC 9112 section 5.2 allows refusing it with 400
                raise ValueError("Folded header lines are not accepted.")
            name, colon, value = line[:-2].partition(b":")
            if not colon or not _TOKEN.fullmatch(name):  # also refuses whitespace before the colon (section 5.1)
                raise ValueError("Illegal header line.")
            value = value.strip(b" \t")
            if _BAD_VALUE.search(value):
                raise ValueError("Illegal character in a header value.")
            if b"_" in name:  # Content_Length would become CONTENT_LENGTH in the WSGI environ
                continue
            key = name.title()
            if key in headers:
                if key in _SINGLETONS:  # two lengths or two credentials: which one a proxy used is unknowable
                    raise ValueError(f"Repeated {key.decode()} header.")
                value = headers[key] + b", " + value
            headers[key] = value
        raise ValueError("Too many header lines.")


_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,12})[ \t]*(?=\r\n)", re.IGNORECASE)


class _Inbox:
    """What a client has sent on one connection, read by its request handler in place of the socket.

    The front (`_CherootServer._receive`, in the selector thread) fills it without ever waiting, and hands the
    connection to a worker only once `whole()`: so a worker never waits on a client, and a slow one costs a buffer
    of at most `_INBOX_LIMIT` bytes and a file descriptor, not a thread. Reading past the end answers end-of-file,
    as a closed connection would: the handler then refuses the request as incomplete.
    """

    bytes_read = 0  # cheroot's reader interface: its statistics, and `closed` for its forced shutdown
    closed = False

    def __init__(self, pending: Callable[[], int] | None = None) -> None:
        self._data = bytearray()
        self._start = 0
        self._scanned = 0  # where the search for the end of the head resumes
        self._pending = pending  # bytes the TLS layer has decrypted but nobody read yet

    def __len__(self) -> int:
        return len(self._data) - self._start

    def feed(self, chunk: bytes) -> None:
        if self._start and self._start * 2 >= len(self._data):  # compact what was read
            del self._data[: self._start]
            self._scanned = max(0, self._scanned - self._start)
            self._start = 0
        self._data += chunk

    def has_data(self) -> bool:
        return len(self) > 0 or (self._pending is not None and self._pending() > 0)

    def whole(self) -> bool:
        """Holds a request head and the body its Content-Length declares, or more than waiting could mend.

        Anything malformed (bare-LF lines, an unreadable or repeated length) or too long counts as whole: the
        handler answers it with a 4xx at once instead of the front waiting for the deadline.
        """
        data = self._data
        begin = max(self._start, self._scanned - 3)
        end = data.find(_HEAD_END, begin)
        if end < 0:
            self._scanned = len(data)
            return data.find(b"\n\n", begin) >= 0 or len(self) >= MAX_HEADER_BYTES
        lengths = _CONTENT_LENGTH.findall(data, self._start, end + 2)
        if len(lengths) != 1 or int(lengths[0]) > MAX_REQUEST_BODY:
            return True
        return len(data) - (end + 4) >= int(lengths[0])

    def _take(self, stop: int) -> bytes:
        chunk = bytes(self._data[self._start : stop])
        self._start = stop
        if self._start == len(self._data):
            self._data.clear()
            self._start = self._scanned = 0
        return chunk

    def read(self, size: int | None = -1) -> bytes:
        available = len(self)
        count = available if size is None or size < 0 else min(size, available)
        return self._take(self._start + count)

    def readline(self, size: int | None = -1) -> bytes:
        stop = len(self._data) if size is None or size < 0 else min(len(self._data), self._start + size)
        newline = self._data.find(b"\n", self._start, stop)
        return self._take(stop if newline < 0 else newline + 1)

    def __iter__(self) -> _Inbox:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        self._data = bytearray()
        self._start = self._scanned = 0
        self.closed = True


class _Request(HTTPRequest):
    """cheroot's request with stricter framing, and error answers that carry the security headers and close."""

    header_reader = _StrictHeaderReader()

    def read_request_headers(self) -> bool:
        if not super().read_request_headers():  # type: ignore[no-untyped-call]
            return False
        length = self.inheaders.get(b"Content-Length")
        if length is not None and not (length.isdigit() and length.isascii()):
            self.simple_response("400 Bad Request", "Malformed Content-Length header.")
            return False
        if b"Transfer-Encoding" in self.inheaders:
            if length is not None:  # RFC 9112 section 6.1: a classic request-smuggling shape
                self.simple_response("400 Bad Request", "Both Content-Length and Transfer-Encoding.")
                return False
            # The front holds a request whole before a worker sees it, which it can only know from a length;
            # RFC 9110 section 15.5.12: a server may refuse a request without one.
            self.simple_response("411 Length Required", "A request body needs a Content-Length.")
            return False
        return True

    def respond(self) -> None:
        # The answer (status line, headers, body parts) is collected, then sent in as few system calls as the client
        # takes (`send_some`): every call releases and re-takes the GIL, and during a poll cycle each re-take waits
        # for the pollers. What the client does not take at once is written by the front (`_Connection.outbox`).
        writer = self.conn.wfile
        collected = _Collected()
        self.conn.wfile = collected
        try:
            super().respond()
        finally:
            self.conn.wfile = writer
            self.conn.send(collected.parts)

    def simple_response(self, status: Any, msg: Any = "") -> None:
        self.close_connection = True  # every simple response is an error: do not trust the rest of the stream
        body = msg if isinstance(msg, bytes) else str(msg).encode("latin-1", "replace")
        lines = [
            f"{self.server.protocol} {status}",
            f"Content-Length: {len(body)}",
            f"Content-Type: {TEXT}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
        ]
        with contextlib.suppress(OSError, ValueError):  # the client is gone or TLS broke: nothing to tell it
            self.conn.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


class _Collected:
    """Stands in for a connection's writer while a response is made: keeps what is written, sends nothing."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        return len(data)

    def flush(self) -> None:
        return None


def send_some(sock: socket.socket, views: deque[memoryview]) -> None:
    """Send what the socket takes now, without waiting, and drop it from the front of `views`.

    Plain sockets take up to 1,024 buffers in one `sendmsg`; TLS takes one buffer a call, retried unchanged after
    the TLS layer asks to wait (OpenSSL's rule for non-blocking writes). The socket's timeout is kept.
    """
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        while views:
            try:
                if isinstance(sock, ssl.SSLSocket):
                    sent = sock.send(views[0])
                else:
                    sent = sock.sendmsg(list(itertools.islice(views, _IOV_MAX)))
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            while sent and views:
                if sent >= len(views[0]):
                    sent -= len(views.popleft())
                else:
                    views[0], sent = views[0][sent:], 0
    finally:
        sock.settimeout(timeout)


class _Connection(HTTPConnection):
    """A connection read through an `_Inbox` that the front fills; its TLS handshake is the front's, too."""

    RequestHandlerClass = _Request
    handshaken = False
    counted = False  # in the server's open-connection counts
    evicted = False  # shut down to make room under the connection cap; cheroot closes it on its next read
    # What the client has not taken yet of an answer: the front writes it as the socket drains, so no worker waits
    # on a client that reads slowly; `close_when_sent` if the connection ends with that answer.
    outbox: deque[memoryview] | None = None
    close_when_sent = False

    def __init__(self, server: Any, sock: Any, makefile: Callable[..., Any] = StreamWriter) -> None:
        pending = sock.pending if isinstance(sock, ssl.SSLSocket) else None

        def files(sock: Any, mode: str = "r", bufsize: int = io.DEFAULT_BUFFER_SIZE) -> Any:
            return _Inbox(pending) if "r" in mode else makefile(sock, mode, bufsize)

        super().__init__(server, sock, files)
        self.inbox: _Inbox = self.rfile

    def send(self, parts: list[bytes]) -> None:
        views = deque(memoryview(part) for part in parts if part)
        send_some(self.socket, views)
        self.outbox = views or None

    def communicate(self) -> bool:
        keep = bool(super().communicate())  # type: ignore[no-untyped-call]
        if self.outbox:  # the worker hands the connection back (put_conn), and the front writes the rest
            self.close_when_sent = not keep
            return True
        return keep

    def close(self) -> None:
        self.server.connection_closed(self)  # uncounts it once: a no-op when called again
        super().close()


class _TlsAdapter:
    """cheroot's ssl-adapter interface over an `ssl.SSLContext`; wraps without a handshake (the front does it)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def bind(self, sock: socket.socket) -> socket.socket:
        return sock

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        try:
            return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), {}
        except OSError as exc:  # the client left between accept() and here
            raise FatalSSLAlert(str(exc)) from None

    def makefile(self, sock: socket.socket, mode: str = "w", bufsize: int = io.DEFAULT_BUFFER_SIZE) -> Any:
        return StreamWriter(sock, mode, bufsize)  # the reader is the connection's _Inbox

    def get_environ(self, sock: socket.socket) -> dict[str, str]:
        return {}


class _CherootServer(WsgiServer):
    """cheroot's WSGI server behind a front that hands workers only whole requests.

    cheroot parks connections in a selector and hands each readable one to a worker, which then reads the request
    itself with a timeout per read: a client sending a byte every few seconds held a worker indefinitely, and 16 of
    them took the server off the network. Here the selector side (`process_conn`) does the reading, without waiting:
    the TLS handshake, then the request head and the body its Content-Length declares, into the connection's
    `_Inbox`; a request not whole within `REQUEST_DEADLINE` of its first byte is closed by cheroot's idle sweep. The
    workers only parse, answer and send what the socket takes at once; the rest of an answer is written from the
    selector as the client drains it (`_write`), and a client that takes nothing for `SEND_TIMEOUT` is closed.
    Connections are capped in all (`MAX_CONNECTIONS`) and per client address (`MAX_PER_CLIENT`); at a cap the
    longest-idle one makes room.
    """

    ConnectionClass = _Connection

    def __init__(self, address: tuple[str, int], app: Any, tls: ssl.SSLContext | None) -> None:
        super().__init__(
            address,
            app,
            numthreads=WORKERS,
            max=WORKERS,
            server_name=f"bedrock-batch-exporter/{__version__}",
            request_queue_size=LISTEN_BACKLOG,
            timeout=IDLE_TIMEOUT,
            shutdown_timeout=STOP_TIMEOUT,
        )
        self.max_request_header_size = MAX_HEADER_BYTES
        self.max_request_body_size = MAX_REQUEST_BODY
        self.keep_alive_conn_limit = MAX_CONNECTIONS
        self.nodelay = True
        if tls is not None:
            self.ssl_adapter = _TlsAdapter(tls)
        self._open = 0
        self._per_client: dict[str, int] = {}
        self._open_lock = threading.Lock()

    @property
    def open_connections(self) -> int:
        return self._open

    def connection_closed(self, conn: _Connection) -> None:
        with self._open_lock:
            if not conn.counted:
                return
            conn.counted = False
            self._open -= 1
            address = str(getattr(conn, "remote_addr", ""))
            left = self._per_client.get(address, 1) - 1
            if left > 0:
                self._per_client[address] = left
            else:
                self._per_client.pop(address, None)

    def put_conn(self, conn: Any) -> None:
        if conn.outbox and self.ready:  # an answer not all sent: park it until the socket drains
            self._park_writing(conn)
            return
        super().put_conn(conn)

    def _park_writing(self, conn: _Connection, progressed: bool = True) -> None:
        if progressed:  # closed by cheroot's sweep SEND_TIMEOUT after the client last took a byte
            conn.last_used = time.time() + SEND_TIMEOUT - IDLE_TIMEOUT
        self._connections_selector().register(conn.socket.fileno(), selectors.EVENT_WRITE, data=conn)

    def _write(self, conn: _Connection) -> None:
        """Send more of a parked answer; then back to reading requests, or closed if the answer was the last."""
        outbox = conn.outbox
        assert outbox is not None
        before = sum(len(view) for view in outbox)
        try:
            send_some(conn.socket, outbox)
        except (OSError, ValueError) as exc:
            log.debug("http: writing to %s failed: %s", getattr(conn, "remote_addr", "?"), exc)
            conn.close()
            return
        if outbox:  # woken without progress: the deadline stays
            self._park_writing(conn, progressed=sum(len(view) for view in outbox) < before)
            return
        conn.outbox = None
        if conn.close_when_sent:
            conn.close()
            return
        self._connections_manager().put(conn)

    def process_conn(self, conn: Any) -> None:
        if conn.last_used is None:
            self._admit(conn)
            return
        if conn.outbox:
            self._write(conn)
            return
        if not conn.inbox.whole():
            wait_for = self._receive(conn)
            if wait_for is None:
                conn.close()
                return
            if wait_for:
                self._connections_selector().register(conn.socket.fileno(), wait_for, data=conn)
                return
        super().process_conn(conn)  # a whole request: to a worker

    def _admit(self, conn: _Connection) -> None:
        """A connection fresh from accept(): counted, capped, then parked in the selector until it sends."""
        address = str(getattr(conn, "remote_addr", ""))
        with self._open_lock:
            self._open += 1
            self._per_client[address] = self._per_client.get(address, 0) + 1
            conn.counted = True
            full = self._open > MAX_CONNECTIONS
            crowded = self._per_client[address] > MAX_PER_CLIENT
        if crowded and not self._evict_longest_idle(address):  # that address's connections are all busy
            conn.close()
            return
        if full and not self._evict_longest_idle():  # every connection is busy: refuse the new one
            conn.close()
            return
        try:
            conn.socket.settimeout(SEND_TIMEOUT)
            # Plain answers go out in one sendmsg, TLS answers in a write per part; without TCP_NODELAY, Nagle and
            # delayed ACKs would hold a short last part ~40 ms.
            conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            conn.close()
            return
        self._connections_manager().put(conn)

    def _receive(self, conn: _Connection) -> int | None:
        """Take what the client has sent so far, never waiting: 0 once the request is whole, else the selector
        events to wait for; None to close (the client left, broke TLS, or sent nothing whole before it hung up).
        """
        sock = conn.socket
        inbox = conn.inbox
        started = inbox.has_data()
        try:
            sock.settimeout(0.0)
            if isinstance(sock, ssl.SSLSocket) and not conn.handshaken:
                conn.last_used = time.time() + REQUEST_DEADLINE - IDLE_TIMEOUT  # a hello has the same deadline
                started = True
                try:
                    sock.do_handshake()
                except ssl.SSLWantReadError:
                    return selectors.EVENT_READ
                except ssl.SSLWantWriteError:
                    return selectors.EVENT_WRITE
                conn.handshaken = True
            while len(inbox) < _INBOX_LIMIT:
                try:
                    chunk = sock.recv(_INBOX_LIMIT - len(inbox))
                except (BlockingIOError, ssl.SSLWantReadError):
                    break
                except ssl.SSLWantWriteError:
                    return selectors.EVENT_WRITE
                if not chunk:  # the client hung up; a whole request sent before that is still answered
                    return 0 if inbox.whole() else None
                if not started:
                    # cheroot's sweep closes a parked connection IDLE_TIMEOUT after last_used: for a request it
                    # begun, that is REQUEST_DEADLINE after its first byte, whatever trickles in after.
                    conn.last_used = time.time() + REQUEST_DEADLINE - IDLE_TIMEOUT
                    started = True
                inbox.feed(chunk)
        except (OSError, ValueError) as exc:
            log.debug("http: reading from %s failed: %s", getattr(conn, "remote_addr", "?"), exc)
            return None
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(SEND_TIMEOUT)
        return 0 if inbox.whole() or len(inbox) >= _INBOX_LIMIT else selectors.EVENT_READ

    def _connections_manager(self) -> Any:
        return getattr(self, "_connections")  # noqa: B009 - set by cheroot's prepare(), untyped

    def _connections_selector(self) -> Any:
        return getattr(self._connections_manager(), "_selector")  # noqa: B009 - cheroot's parked connections

    def _evict_longest_idle(self, address: str | None = None) -> bool:
        # Shut the socket down rather than close it: the selector then reports it readable (EOF) and cheroot retires
        # it through its own path; unregistering it here would race with the selector loop's ready list.
        parked = [
            (c.last_used, c)
            for _, c in self._connections_selector().connections
            if c is not self and not c.evicted and (address is None or str(getattr(c, "remote_addr", "")) == address)
        ]
        if not parked:
            return False
        _, oldest = min(parked, key=lambda item: item[0])
        oldest.evicted = True
        self.connection_closed(oldest)  # no longer counted: the next arrival must not evict another for it
        with contextlib.suppress(OSError):
            oldest.socket.shutdown(socket.SHUT_RDWR)
        return True

    def _serve_unservicable(self) -> None:
        """Unused: the request queue is bounded by the connection cap, so it never overflows into 503s."""

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        # cheroot reports client misbehaviour (resets, timeouts, bad TLS) below ERROR: debug for us. Anything at
        # ERROR is a bug in a handler: one line with where it happened, never a stack trace from request input.
        if level < logging.ERROR:
            log.debug("http: %s", msg)
            return
        where = ""
        _, exc, tb = sys.exc_info()
        if traceback and exc is not None and tb is not None:
            frame = tb_module.extract_tb(tb)[-1]
            where = f": {type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno})"
        log.error("http: %s%s", msg, where)


class _EnvironHeaders:
    """Request headers from a WSGI environ, looked up case-insensitively by their HTTP names."""

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def get(self, name: str, default: Any = None, /) -> Any:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            key = "HTTP_" + key
        return self._environ.get(key, default)


class WsgiApp:
    """A Router as a WSGI application: security headers on every answer, a one-line log and 500 on a bug."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = str(environ["REQUEST_METHOD"])
        target = str(environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/")
        body = environ["wsgi.input"]
        try:
            answer = self.router.handle(method, target, _EnvironHeaders(environ), body.read)
        except Exception as exc:  # a bug in a handler: the client gets 500, the log one line (never the traceback)
            log.error("%s %s failed: %s: %s", method, target[:200], type(exc).__name__, exc)
            answer = Response(500, b"internal error\n", TEXT)
        headers = [
            ("Content-Type", answer.content_type),
            ("Content-Length", str(answer.length)),
            *SECURITY_HEADERS.items(),
            *answer.headers.items(),
        ]
        start_response(f"{answer.status} {_reason(answer.status)}", headers)
        return [] if method == "HEAD" else [answer.body, *answer.more]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class MetricsServer:
    """Serves a Router over HTTP(S) with cheroot: a fixed worker pool, capped connections, keep-alive with a timeout.

    The socket is bound here (so a taken port fails at construction); `start()` begins accepting.
    """

    def __init__(self, address: tuple[str, int], router: Router, *, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self._server = _CherootServer(address, WsgiApp(router), tls)
        self._thread: threading.Thread | None = None
        # Threads inherit daemon-ness from their creator: preparing in a daemon thread makes the worker pool daemon
        # threads, so a worker stuck on a client can never keep the process alive after stop().
        failure: list[BaseException] = []

        def prepare() -> None:
            try:
                self._server.prepare()
            except BaseException as exc:  # re-raised in the caller below
                failure.append(exc)

        preparer = threading.Thread(target=prepare, name="http-prepare", daemon=True)
        preparer.start()
        preparer.join()
        if failure:
            raise failure[0]

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self._server.bind_addr[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.server_address
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self._tls else 'http'}://{shown}:{port}"

    @property
    def open_connections(self) -> int:
        return self._server.open_connections

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every connection and the workers; returns within about 2 s."""
        stopper = threading.Thread(target=self._server.stop, name="http-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT + 0.8)
        if stopper.is_alive():
            log.warning("HTTP server workers did not stop in time; leaving them to exit with the process")
        if self._thread is not None:
            self._thread.join(0.5)


def parse_listen_address(value: str) -> tuple[str, int]:
    """`host:port`, `:port` or `[v6]:port` -> (host, port); an empty host means all interfaces."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"listen address {value!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an exporter listens on all interfaces by default
    return host, int(port_text)
