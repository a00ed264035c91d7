"""The Prometheus sink: a Collector over the Store, rendered once per Snapshot, served over HTTP."""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.sinks.status import SECURITY_HEADERS, StatusPage
from exporter.snapshot import Snapshot, Store
from exporter.webconfig import BasicAuth

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS
_GZIP_LEVEL = 6


class SnapshotCollector(Collector):
    """Yields the CloudWatch series of one Snapshot as gauge families (no AWS calls, no other work)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for sample in self._snapshot.samples():
            family = families.get(sample.name)
            if family is None:
                family = families[sample.name] = Metric(sample.name, sample.documentation, sample.kind)
            name = f"{sample.name}_total" if sample.kind == "counter" else sample.name
            family.add_sample(name, dict(sample.labels), sample.value, sample.timestamp)
        yield from families.values()


@dataclass(frozen=True)
class RenderedSnapshot:
    """The exposition body of one Snapshot, plain and as the start of a gzip stream."""

    version: int
    body: bytes
    deflated: bytes  # raw deflate blocks ending in a sync flush, so more blocks can follow
    crc: int


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def format_text(families: Iterable[Metric]) -> bytes:
    """The text exposition format (0.0.4) of `families`.

    prometheus-client's generate_latest re-validates every name on every sample, which took 170 ms at 10,000
    series; our names are valid by construction (exporter.naming), so this does the same formatting in a fraction.
    """
    out: list[str] = []
    for family in families:
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {family.name}{'_total' if family.type == 'counter' else ''} {doc}\n")
        out.append(f"# TYPE {family.name}{'_total' if family.type == 'counter' else ''} {family.type}\n")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels.items())
            line = f"{sample.name}{{{labels}}} " if labels else f"{sample.name} "
            line += floatToGoString(sample.value)  # type: ignore[no-untyped-call]
            if sample.timestamp is not None:
                line += f" {int(float(sample.timestamp) * 1000)}"
            out.append(line + "\n")
    return "".join(out).encode("utf-8")


def render(snapshot: Snapshot) -> RenderedSnapshot:
    body = format_text(SnapshotCollector(snapshot).collect())
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return RenderedSnapshot(snapshot.version, body, deflated, zlib.crc32(body))


def gzip_concat(rendered: RenderedSnapshot, tail: bytes) -> bytes:
    """One gzip member holding rendered.body + tail, compressing only the (small) tail now."""
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated_tail = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
    crc = zlib.crc32(tail, rendered.crc)
    size = (len(rendered.body) + len(tail)) & 0xFFFFFFFF
    return _GZIP_HEADER + rendered.deflated + deflated_tail + struct.pack("<II", crc, size)


class Exposition:
    """Keeps the rendering of the newest Snapshot; renders in the publishing thread, never in a scrape."""

    def __init__(self, store: Store, self_registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._rendered = RenderedSnapshot(-1, b"", b"", 0)
        self._self_registry = self_registry
        self._store = store
        store.add_listener(self._on_snapshot)

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        rendered = render(snapshot)
        with self._lock:
            if rendered.version > self._rendered.version:
                self._rendered = rendered

    def body(self, gzip: bool = False) -> bytes:
        """The full /metrics body: the cached CloudWatch series, then the self-metrics rendered now."""
        rendered = self._rendered
        tail = generate_latest(self._self_registry)
        if gzip:
            return gzip_concat(rendered, tail)
        return rendered.body + tail


MAX_REQUEST_BODY = 64 * 1024
ReloadHook = Callable[[], tuple[bool, str]]


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

    def do_GET(self) -> None:
        if self._authorized():
            self._dispatch(send_body=True)

    def do_HEAD(self) -> None:
        if self._authorized():
            self._dispatch(send_body=False)

    def do_POST(self) -> None:
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        if path != "/-/reload" or self.server.reload is None:
            self._method_not_allowed()
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            self.close_connection = True
            self._reply(413, b"request body too large\n", _TEXT, True)
            return
        self.rfile.read(length)
        ok, message = self.server.reload()
        self._reply(200 if ok else 400, (message + "\n").encode(), _TEXT, True)

    def _method_not_allowed(self) -> None:
        allowed = "GET, HEAD, POST" if self.path.split("?", 1)[0] == "/-/reload" else "GET, HEAD"
        self._reply(405, b"method not allowed\n", _TEXT, True, {"Allow": allowed})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _authorized(self) -> bool:
        auth = self.server.auth
        if auth is None or auth.check(self.headers.get("Authorization")):
            return True
        self._reply(401, b"unauthorized\n", _TEXT, True, {"WWW-Authenticate": 'Basic realm="bedrock-batch-exporter"'})
        return False

    def _dispatch(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        srv = self.server
        if path == "/healthz":
            self._reply(200, b"ok\n", _TEXT, send_body)
        elif path == "/readyz":
            if srv.store.snapshot.ready:
                self._reply(200, b"ready\n", _TEXT, send_body)
            else:
                self._reply(503, b"not ready: no successful poll cycle yet\n", _TEXT, send_body)
        elif not srv.serve_metrics:
            self._reply(404, b"not found: metrics are pushed over OTLP in this mode\n", _TEXT, send_body)
        elif path == srv.metrics_path:
            gzip = "gzip" in self.headers.get("Accept-Encoding", "").lower()
            extra = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzip else {}
            self._reply(200, srv.exposition.body(gzip=gzip), CONTENT_TYPE, send_body, extra)
        elif srv.status is not None and (page := srv.status.respond(self.path)) is not None:
            self._reply(page.status, page.body, page.content_type, send_body, dict(page.headers))
        else:
            self._reply(404, b"not found\n", _TEXT, send_body)

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        send_body: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


_TEXT = "text/plain; charset=utf-8"


class MetricsServer(ThreadingHTTPServer):
    """HTTP server for /metrics, /healthz, /readyz, the status page and /-/reload; one daemon thread per request.

    `tls` serves HTTPS, `auth` demands basic auth on every path, `serve_metrics=False` leaves only the probes (the
    OTLP-only mode), `reload` (if set) answers POST /-/reload.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    status: StatusPage | None = None  # the status page at / and /api/status; the app sets it

    def __init__(
        self,
        address: tuple[str, int],
        store: Store,
        exposition: Exposition,
        metrics_path: str = "/metrics",
        *,
        serve_metrics: bool = True,
        tls: ssl.SSLContext | None = None,
        auth: BasicAuth | None = None,
        reload: ReloadHook | None = None,
    ) -> None:
        self.store = store
        self.exposition = exposition
        self.metrics_path = metrics_path
        self.serve_metrics = serve_metrics
        self.auth = auth
        self.reload = reload
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
