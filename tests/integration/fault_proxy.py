"""A fault-injecting HTTP proxy for tests: sits between the exporter and the simulated AWS on 127.0.0.1.

Faults are chosen per operation and region: throttling, 500/503, connection resets, answers slower than the read
timeout, truncated or malformed bodies, GetMetricData PartialData answers split over NextToken pages, AccessDenied
and expired-token errors. Error bodies follow the awsJson1_0 protocol botocore speaks to CloudWatch here, and the
restJson1 protocol of the Bedrock job API.

Answer rewrites (AWS answers our fakes never send, each from botocore's output shapes):
- "result_status": GetMetricData results given a per-result `StatusCode` (shape `StatusCode`: Complete, InternalError,
  PartialData, Forbidden) with no datapoints and optional `Messages` (shape `MessageData`: Code, Value).
- "job_status": job summaries given a `status` outside the SDK's `ModelInvocationJobStatus` enum (e.g. "Paused").
- "job_fields": job summaries without optional members (not in `ModelInvocationJobSummary.required`).
Every request that reaches the proxy is counted in `received`, faulted or not.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from exporter.demo.server import operation_of

ERRORS = {  # kind -> (HTTP status, error code)
    "throttle": (400, "ThrottlingException"),
    "http500": (500, "InternalFailure"),
    "http503": (503, "ServiceUnavailable"),
    "access_denied": (400, "AccessDeniedException"),
    "expired_token": (400, "ExpiredTokenException"),
}
REWRITES = ("result_status", "result_points", "job_status", "job_fields", "job_values")
KINDS = ("endless_jobs", *ERRORS, "reset", "slow", "truncated", "malformed", "partial", "oversized", *REWRITES)
# Optional members of ModelInvocationJobSummary (botocore bedrock model) that "job_fields" removes by default.
JOB_OPTIONAL_FIELDS = (
    "endTime",
    "jobExpirationTime",
    "totalRecordCount",
    "processedRecordCount",
    "successRecordCount",
    "errorRecordCount",
    "modelInvocationType",
)
_JOB_LISTINGS = {"ListModelInvocationJobs", "GetModelInvocationJob"}
_REST_STATUS = {"throttle": 429, "access_denied": 403, "expired_token": 403}


@dataclass
class Fault:
    kind: str
    operation: str | None = None  # None: every operation
    region: str | None = None  # None: every region
    seconds: float = 0.0  # for "slow"
    # "result_status": the StatusCode given, the result Ids it applies to (None: every result), Messages to attach
    status_code: str = "Forbidden"
    ids: frozenset[str] | None = None
    messages: tuple[tuple[str, str], ...] = ()  # (Code, Value) pairs
    keep_datapoints: bool = False  # True: keep the values (a PartialData result without NextToken still has some)
    # "job_status" / "job_fields": the jobs (by jobName or jobArn) they apply to (None: every job)
    jobs: frozenset[str] | None = None
    job_status: str = "Paused"
    fields: tuple[str, ...] = JOB_OPTIONAL_FIELDS
    values: tuple[tuple[str, str, Any], ...] = ()  # "job_values": (jobName, member, raw JSON value)
    size: int = 0  # "oversized": the answer's size in bytes
    chunked: bool = False  # "oversized": without a Content-Length (the end is the close)


def job_values(values: dict[str, dict[str, Any]]) -> Fault:
    """Job summaries (listing and single job, by jobName) with members set to raw values botocore's shapes do not
    allow."""
    return Fault("job_values", values=tuple((j, m, v) for j, members in values.items() for m, v in members.items()))


def extra_points(points: tuple[tuple[float, float], ...]) -> Fault:
    """Every GetMetricData result also carries these (timestamp, value) datapoints, wherever they lie in time."""
    return Fault("result_points", operation="GetMetricData", values=tuple(("", str(t), v) for t, v in points))


def endless_jobs(operation: str = "ListModelInvocationJobs") -> Fault:
    """`operation` (ListModelInvocationJobs or ListMetrics) answers every page with a new token (each page is the
    first page again)."""
    return Fault("endless_jobs", operation=operation)


def forbidden_results(
    ids: frozenset[str] | None = None,
    messages: tuple[tuple[str, str], ...] = (),
    status_code: str = "Forbidden",
    keep_datapoints: bool = False,
) -> Fault:
    """Every (or each named) GetMetricData result answered `status_code`, with no datapoints unless kept."""
    return Fault(
        "result_status",
        operation="GetMetricData",
        status_code=status_code,
        ids=ids,
        messages=messages,
        keep_datapoints=keep_datapoints,
    )


def oversized(operation: str, size: int, chunked: bool = False) -> Fault:
    """`operation`'s real answer padded with JSON whitespace to `size` bytes (still valid JSON), sent with its
    Content-Length, or without one (`chunked`): AWS documents no answer size limit to hold it to."""
    return Fault("oversized", operation=operation, size=size, chunked=chunked)


def denied_manifests() -> Fault:
    """S3 GetObject of any `manifest.json.out` refused with AccessDenied, as without s3:GetObject."""
    return Fault("s3_denied")


def unknown_job_status(status: str = "Paused", jobs: frozenset[str] | None = None) -> Fault:
    """Job summaries (listing and single job) carry a `status` the SDK enum does not list."""
    return Fault("job_status", job_status=status, jobs=jobs)


def stripped_jobs(fields: tuple[str, ...] = JOB_OPTIONAL_FIELDS, jobs: frozenset[str] | None = None) -> Fault:
    """Job summaries (listing and single job) without the named optional members."""
    return Fault("job_fields", fields=fields, jobs=jobs)


class FaultProxy:
    """Forwards every request to `upstream` unless a matching fault says otherwise; counts what it did."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.injected: Counter[tuple[str, str]] = Counter()  # (operation, kind) -> times
        self.received: Counter[tuple[str, str]] = Counter()  # (operation, region) -> requests that arrived
        self._lock = threading.Lock()
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def set(self, *faults: Fault) -> None:
        with self._lock:
            self.faults = list(faults)

    def clear(self) -> None:
        self.set()

    def count(self, operation: str, region: str | None = None) -> int:
        """Requests for `operation` (in `region`, if given) that reached the proxy, retries included."""
        with self._lock:
            return sum(n for (op, r), n in self.received.items() if op == operation and region in (None, r))

    def _match(self, operation: str, region: str) -> Fault | None:
        with self._lock:
            self.received[(operation, region)] += 1
            for fault in self.faults:
                if fault.kind in ("job_status", "job_fields", "job_values") and fault.operation is None:
                    if operation not in _JOB_LISTINGS:
                        continue
                elif fault.kind == "result_status" and operation != "GetMetricData":
                    continue
                elif fault.kind == "s3_denied":
                    if not (operation.startswith("GET ") and operation.endswith("/manifest.json.out")):
                        continue
                    self.injected[("GetObject", fault.kind)] += 1
                    return fault
                if fault.operation in (None, operation) and fault.region in (None, region):
                    self.injected[(operation, fault.kind)] += 1
                    return fault
        return None

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes, path: str | None = None, payload: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length")}
        data = body if payload is None else payload
        headers["Content-Length"] = str(len(data))
        conn.request(handler.command, path or handler.path, body=data, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        result = response.status, dict(response.getheaders()), answer
        conn.close()
        return result

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        environ = {
            "HTTP_AUTHORIZATION": handler.headers.get("Authorization", ""),
            "HTTP_X_AMZ_TARGET": handler.headers.get("X-Amz-Target", ""),
            "PATH_INFO": urlsplit(handler.path).path,
            "REQUEST_METHOD": handler.command,
            "CONTENT_TYPE": "",
        }
        _, region, operation = operation_of(environ)
        fault = self._match(operation, region)
        rest = not environ["HTTP_X_AMZ_TARGET"]
        if fault is None:
            self._reply(handler, *self._forward(handler, body))
        elif fault.kind in ERRORS:
            status, code = ERRORS[fault.kind]
            if rest:
                status = _REST_STATUS.get(fault.kind, status)
            payload = json.dumps({"__type": code, "message": f"injected {fault.kind}"}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
            self._reply(handler, status, headers, payload)
        elif fault.kind == "reset":
            handler.close_connection = True
            handler.connection.shutdown(2)
        elif fault.kind == "slow":
            self._release.wait(fault.seconds)
            self._reply(handler, *self._forward(handler, body))
        elif fault.kind == "truncated":
            status, headers, answer = self._forward(handler, body)
            headers["Content-Length"] = str(len(answer))
            self._reply(handler, status, headers, answer[: len(answer) // 2], close=True)
        elif fault.kind == "malformed":
            self._reply(handler, 200, {"Content-Type": "application/x-amz-json-1.0"}, b'{"MetricDataResults": [')
        elif fault.kind == "endless_jobs" and not rest:  # awsJson (ListMetrics): the token is in the body
            request = json.loads(body)
            request.pop("NextToken", None)
            status, headers, answer = self._forward(handler, body, payload=json.dumps(request).encode())
            parsed = json.loads(answer)
            with self._lock:
                parsed["NextToken"] = f"endless-{self.injected[(operation, fault.kind)]}"
            self._reply(handler, status, headers, json.dumps(parsed).encode())
        elif fault.kind == "endless_jobs":
            parts = urlsplit(handler.path)
            query = "&".join(p for p in parts.query.split("&") if not p.startswith("nextToken="))
            status, headers, answer = self._forward(handler, body, path=f"{parts.path}?{query}")
            parsed = json.loads(answer)
            with self._lock:
                parsed["nextToken"] = f"endless-{self.injected[(operation, fault.kind)]}"
            self._reply(handler, status, headers, json.dumps(parsed).encode())
        elif fault.kind == "partial":
            self._partial(handler, body)
        elif fault.kind == "oversized":
            status, headers, answer = self._forward(handler, body)
            self._padded(handler, status, headers, answer, fault)
        elif fault.kind == "s3_denied":
            # S3's REST error format (S3 API reference, "Error responses"): XML <Error> with Code and Message, 403
            payload = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied'
                b"</Message><RequestId>injected</RequestId><HostId>injected</HostId></Error>"
            )
            self._reply(handler, 403, {"Content-Type": "application/xml"}, payload)
        elif fault.kind in REWRITES:
            status, headers, answer = self._forward(handler, body)
            if 200 <= status < 300:  # AWS's errors pass unchanged
                answer = json.dumps(_rewrite(fault, json.loads(answer))).encode()
            self._reply(handler, status, headers, answer)
        else:
            raise ValueError(f"unknown fault {fault.kind}")

    def _partial(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        """Answer GetMetricData in two pages: half the results marked PartialData with a NextToken, then the rest."""
        request = json.loads(body)
        second = request.pop("NextToken", None) == "injected-page-2"
        status, headers, answer = self._forward(handler, body, payload=json.dumps(request).encode())
        parsed = json.loads(answer)
        results = parsed.get("MetricDataResults", [])
        half = len(results) // 2
        if second:
            parsed["MetricDataResults"] = results[half:]
        else:
            for result in results[:half]:
                result["StatusCode"] = "PartialData"
            parsed["MetricDataResults"] = results[:half]
            parsed["NextToken"] = "injected-page-2"
            parsed["Messages"] = [{"Code": "MaxDatapointsExceeded", "Value": "injected partial answer"}]
        self._reply(handler, status, headers, json.dumps(parsed).encode())

    @staticmethod
    def _padded(
        handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], answer: bytes, fault: Fault
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", headers.get("Content-Type", "application/json"))
        if fault.chunked:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        else:
            handler.send_header("Content-Length", str(max(fault.size, len(answer))))
        handler.end_headers()
        try:
            handler.wfile.write(answer)
            left = fault.size - len(answer)
            while left > 0:  # bounded: size bytes in all; the client may hang up early, which ends it
                piece = min(left, 65536)
                handler.wfile.write(b" " * piece)
                left -= piece
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes, close: bool = False
    ) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                handler.send_header(name, value)
        length = headers.get("Content-Length") if close else None
        handler.send_header("Content-Length", length or str(len(body)))
        if close:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()


def _rewrite(fault: Fault, answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as AWS may send it under `fault` (see the module docstring)."""
    if fault.kind == "result_points":
        for result in answer.get("MetricDataResults", []):
            result["Timestamps"] = [*result.get("Timestamps", []), *(float(t) for _, t, _ in fault.values)]
            result["Values"] = [*result.get("Values", []), *(v for _, _, v in fault.values)]
        return answer
    if fault.kind == "result_status":
        for result in answer.get("MetricDataResults", []):
            if fault.ids is None or result.get("Id") in fault.ids:
                # An errored result carries no datapoints (GetMetricData API reference, MetricDataResult.StatusCode)
                result["StatusCode"] = fault.status_code
                if not fault.keep_datapoints:
                    result.update(Timestamps=[], Values=[])
                if fault.messages:
                    result["Messages"] = [{"Code": code, "Value": value} for code, value in fault.messages]
                else:
                    result.pop("Messages", None)
        return answer
    summaries = answer.get("invocationJobSummaries")
    jobs = summaries if isinstance(summaries, list) else [answer]  # a listing, or GetModelInvocationJob's job
    for job in jobs:
        if fault.jobs is None or job.get("jobName") in fault.jobs or job.get("jobArn") in fault.jobs:
            if fault.kind == "job_status":
                job["status"] = fault.job_status
            elif fault.kind == "job_values":
                job.update({m: v for name, m, v in fault.values if job.get("jobName") == name})
            else:
                for field in fault.fields:
                    job.pop(field, None)
    return answer
