"""A simulated AWS on loopback: moto's server over HTTP, with a log of the calls it served and a delay knob."""

from __future__ import annotations

import io
import re
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from exporter.demo.insights import answer as insights_answer
from exporter.demo.jobs import handles
from exporter.demo.linked import Links
from exporter.demo.quotas import ServiceQuotas
from exporter.demo.wsgi import StartResponse

_SMITHY_PATH = re.compile(r"^/service/[^/]+/operation/([A-Za-z]+)$")
_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
MAX_FORM_BODY = 1 << 20


def operation_of(environ: dict[str, Any]) -> tuple[str, str, str]:
    """(service, region, operation) of a signed AWS request, for the smithy-rpcv2, JSON and query protocols."""
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service, region = (scope.group(3), scope.group(2)) if scope else ("", "")
    if match := _SMITHY_PATH.match(environ.get("PATH_INFO", "")):
        return service, region, match.group(1)
    if target := environ.get("HTTP_X_AMZ_TARGET"):
        return service, region, target.rsplit(".", 1)[-1]
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_FORM_BODY)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        return service, region, action
    path = environ.get("PATH_INFO", "")
    if path == "/model-invocation-jobs":
        return service, region, "ListModelInvocationJobs"
    if path.startswith("/model-invocation-job/"):
        return service, region, "GetModelInvocationJob"
    if path == "/foundation-models":
        return service, region, "ListFoundationModels"
    if path == "/listTagsForResource":
        return service, region, "ListTagsForResource"
    return service, region, f"{environ.get('REQUEST_METHOD', '')} {path}"


def _account_of(environ: dict[str, Any]) -> str:
    """The account moto serves a request from, by its access key (assumed-role keys map to the role's account)."""
    from moto.iam.models import get_account_id_from

    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return get_account_id_from(scope.group(1)) if scope else ""


def _metric_data(environ: dict[str, Any], region: str) -> list[Any]:
    """moto's stored CloudWatch datapoints of the requesting account in `region`."""
    from moto.cloudwatch.models import cloudwatch_backends

    return list(cloudwatch_backends[_account_of(environ)][region].metric_data)


class SimulatedAws:
    """moto's AWS (CloudWatch, STS, ...) served on 127.0.0.1 by a threaded werkzeug server.

    Bedrock's batch-job API, which moto lacks, is served by the faithful fake in `exporter.demo.jobs` (`jobs` is its
    store). `calls` counts the requests served by (service, region, operation), so tests measure API calls on the
    server side; `delay` makes every request wait first (a slow or hanging AWS); requests for a region named in
    `broken_regions` ("eu-west-1", or "ACCOUNT:eu-west-1" for one account only) get 503 when the exporter sends them
    (its user agent), so the region is unreadable to it while the simulation's own writes go on (a fault, not a halt).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        from exporter.demo.jobs import JobsApp, JobStore

        self._moto = DomainDispatcherApplication(create_backend_app)
        self.jobs = JobStore(seed=1)
        self._jobs_app = JobsApp(self.jobs)
        self.broken_regions: set[str] = set()
        self.links = Links()  # monitoring accounts and their linked source accounts (CloudWatch cross-account)
        self.quotas = ServiceQuotas()  # Service Quotas' bedrock quotas and Bedrock's model catalogue
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.exporter_calls: Counter[tuple[str, str]] = Counter()  # (service, operation) the exporter itself made
        self.delay = 0.0

        class QuietHandler(MotoRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                """The request log would drown the exporter's own; `calls` keeps the count."""

        self._server = make_server(host, port, self._app, threaded=True, request_handler=QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def count(self, operation: str, region: str | None = None) -> int:
        """Requests served for `operation` (in `region`, if given)."""
        with self._lock:
            return sum(n for (_, r, op), n in self.calls.items() if op == operation and region in (None, r))

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        key = operation_of(environ)
        by_exporter = "bedrock-batch-exporter/" in environ.get("HTTP_USER_AGENT", "")
        with self._lock:
            self.calls[key] += 1
            if by_exporter:
                self.exporter_calls[(key[0], key[2])] += 1
        if self.delay > 0:
            self._released.wait(self.delay)
        # Broken for the exporter only: the simulation's own writes (another user agent) keep the world moving.
        broken = key[1] in self.broken_regions or f"{_account_of(environ)}:{key[1]}" in self.broken_regions
        if broken and by_exporter:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Content-Length", "20")])
            return [b"region unavailable\r\n"]
        if handles(environ):
            return self._jobs_app(environ, start_response)
        if self.quotas.handles(environ):
            answered = self.quotas(environ, start_response, _account_of(environ), key[1])
            if answered is not None:
                return answered
        # moto keeps accounts apart: exporter.demo.linked answers a monitoring account's cross-account requests
        linked = self.links.answer(environ, start_response, _account_of(environ), self._moto, self._cloudwatch)
        return linked if linked is not None else self._cloudwatch(environ, start_response)

    def _cloudwatch(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """moto, and exporter.demo.insights for GetMetricData with a Metrics Insights query (moto does not evaluate
        them)."""
        _, region, operation = operation_of(environ)
        if operation == "GetMetricData":
            answered = insights_answer(environ, start_response, self._moto, lambda: _metric_data(environ, region))
            if answered is not None:
                return answered
        result: Iterable[bytes] = self._moto(environ, start_response)
        return result

    def start(self) -> SimulatedAws:
        self._thread = threading.Thread(target=self._server.serve_forever, name="simulated-aws", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
