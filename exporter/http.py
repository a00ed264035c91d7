"""The HTTP front door: routing, auth and security headers (`Router`), behind a thin server adapter.

`Router.handle` knows nothing of the server library: it takes a method, a request target, headers and a body reader,
and returns a `Response`. `MetricsServer` adapts one server library to it, so the library can change alone.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from exporter import __version__
from exporter.snapshot import Store
from exporter.webconfig import BasicAuth

log = logging.getLogger(__name__)

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
MAX_REQUEST_BODY = 64 * 1024
BUILTIN_PATHS = ("/", "/healthz", "/readyz", "/api/status", "/-/reload", "/runbooks")

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


class MetricsBody(Protocol):
    """What serves the /metrics body (the Prometheus sink's Exposition)."""

    def body(self, gzip: bool = False) -> bytes: ...


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
    ) -> None:
        self.store = store
        self.exposition = exposition  # None: metrics are pushed over OTLP only, /metrics answers 404
        self.metrics_path = metrics_path
        self.pages = pages
        self.auth = auth
        self.reload = reload

    def handle(self, method: str, target: str, headers: Headers, read_body: Callable[[int], bytes]) -> Response:
        """The answer to one request; `headers` are looked up case-insensitively by the adapter."""
        if self.auth is not None and not self.auth.check(headers.get("Authorization")):
            return Response(401, b"unauthorized\n", TEXT, {"WWW-Authenticate": 'Basic realm="bedrock-batch-exporter"'})
        path = target.split("?", 1)[0]
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
            gzip = "gzip" in headers.get("Accept-Encoding", "").lower()
            extra = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzip else {}
            return Response(200, self.exposition.body(gzip=gzip), CONTENT_TYPE_METRICS, extra)
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


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.1"
    timeout = 30
    server_version = f"bedrock-batch-exporter/{__version__}"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms per scrape
        # on keep-alive connections (measured in benchmarks/).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:  # the handshake runs here, in the request's thread, so a slow client cannot stall accept()
                self.connection.do_handshake()
            except (OSError, ssl.SSLError) as exc:
                log.debug("TLS handshake with %s failed: %s", self.client_address[0], exc)
                self.close_connection = True
                return
        super().handle()

    def _serve(self) -> None:
        answer = self.server.router.handle(self.command, self.path, self.headers, self.rfile.read)
        if answer.status in (400, 413):
            self.close_connection = True
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class MetricsServer(ThreadingHTTPServer):
    """Serves a Router over HTTP(S) in a background thread; one daemon thread per connection."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], router: Router, *, tls: ssl.SSLContext | None = None) -> None:
        self.router = router
        self._tls = tls
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self._thread: threading.Thread | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self._tls is not None:
            sock.settimeout(_Handler.timeout)
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"{'https' if self._tls else 'http'}://{shown}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def parse_listen_address(value: str) -> tuple[str, int]:
    """`host:port`, `:port` or `[v6]:port` -> (host, port); an empty host means all interfaces."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"listen address {value!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an exporter listens on all interfaces by default
    return host, int(port_text)
