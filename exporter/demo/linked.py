"""CloudWatch cross-account observability for the simulated AWS: a monitoring account reads its source accounts'
metrics.

moto keeps each account's CloudWatch apart and ignores the cross-account members of the API. This layer answers them
from moto's own per-account data, each part of a request forwarded to moto as the account it is for (moto's
`x-moto-account-id` header). What it does, and where each behaviour comes from:

- `Links` is a monitoring account's sink with its source accounts linked (CloudWatch Observability Access Manager:
  CreateSink/CreateLink). AWS links per region; here a link holds in every region (a simplification).
- ListMetrics with `IncludeLinkedAccounts: true` from a monitoring account: the metrics of the monitoring account and
  of every linked source account, with `OwningAccounts` "a 1:1 mapping between each metric that is returned and the
  ID of the owning account" (ListMetricsOutput, botocore's model). `OwningAccount` returns "metrics only from one
  source account" (ListMetricsInput). The monitoring account's own metrics are listed with its own ID: AWS names
  only "the source accounts" there, so this is an assumption, and the exporter treats its own ID as its own.
- Pages of 500 metrics (as ListMetrics pages everywhere); tokens are opaque and single-use, as moto's.
- `IncludeLinkedAccounts` from an account with no source linked: AWS does not say; answered as without it (moto).
- GetMetricData: a query's `AccountId` is "the ID of the account where the metrics are located ... in a monitoring
  account, use this to specify which account to retrieve this metric from" (MetricDataQuery). A query for a linked
  account is read from that account. For an account that is not linked AWS documents no answer: this fake answers
  that result with StatusCode `Forbidden` and no values (a guess, named as one), the rest of the call unaffected.
"""

from __future__ import annotations

import io
import itertools
import json
import threading
from collections.abc import Iterable
from typing import Any

from exporter.demo.wsgi import StartResponse, WsgiApp, forward

JSON_TYPE = "application/x-amz-json-1.0"
MAX_BODY = 4 << 20
PAGE = 500  # ListMetrics: at most 500 metrics a page
MAX_PENDING_PAGES = 100  # unused ListMetrics tokens kept; the oldest is forgotten first
MAX_MOTO_PAGES = 1000  # bound on moto's own ListMetrics chain per account


def _json(start_response: StartResponse, body: dict[str, Any], status: str = "200 OK") -> list[bytes]:
    raw = json.dumps(body).encode()
    start_response(status, [("Content-Type", JSON_TYPE), ("Content-Length", str(len(raw)))])
    return [raw]


class Links:
    """Monitoring accounts and the source accounts linked to each; answers the cross-account requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, set[str]] = {}
        self._pages: dict[str, list[tuple[Any, str]]] = {}
        self._tokens = itertools.count(1)

    def link(self, monitoring: str, source: str) -> None:
        with self._lock:
            self._sources.setdefault(monitoring, set()).add(source)

    def clear(self) -> None:
        with self._lock:
            self._sources.clear()
            self._pages.clear()

    def sources(self, monitoring: str) -> list[str]:
        with self._lock:
            return sorted(self._sources.get(monitoring, ()))

    def answer(
        self, environ: dict[str, Any], start_response: StartResponse, requester: str, moto: WsgiApp, rest: WsgiApp
    ) -> Iterable[bytes] | None:
        """Answer a cross-account ListMetrics or GetMetricData; None (body left readable) for any other request.
        `moto` serves one account's CloudWatch; `rest` is what answers the caller's own GetMetricData queries."""
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
        if operation not in ("ListMetrics", "GetMetricData") or not self.sources(requester):
            return None
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            return None
        if not isinstance(request, dict):
            return None
        if operation == "ListMetrics":
            if request.get("IncludeLinkedAccounts") is not True:
                return None
            return self._list_metrics(environ, start_response, request, requester, moto)
        return self._get_metric_data(environ, start_response, request, requester, moto, rest)

    def _list_metrics(
        self, environ: dict[str, Any], start_response: StartResponse, request: dict[str, Any], requester: str, moto: Any
    ) -> Iterable[bytes]:
        token = request.get("NextToken")
        if token is not None:
            with self._lock:
                entries = self._pages.pop(str(token), None)
            if entries is None:
                body = {"__type": "InvalidParameterValueException", "message": "The NextToken is not valid"}
                return _json(start_response, body, "400 Bad Request")
        else:
            accounts = [requester, *self.sources(requester)]
            if owning := request.get("OwningAccount"):
                accounts = [a for a in accounts if a == owning]
            entries = []
            query: dict[str, Any] = {
                k: request[k] for k in ("Namespace", "MetricName", "Dimensions", "RecentlyActive") if k in request
            }
            for account in accounts:
                found = self._moto_metrics(environ, query, account, moto)
                if isinstance(found, list):
                    entries.extend((metric, account) for metric in found)
                else:  # moto refused (a bad parameter): its answer goes back as it is
                    start_response(found[0], found[1])
                    return [found[2]]
        page, rest = entries[:PAGE], entries[PAGE:]
        answer: dict[str, Any] = {"Metrics": [m for m, _ in page], "OwningAccounts": [a for _, a in page]}
        if rest:
            answer["NextToken"] = next_token = f"linked-{next(self._tokens)}"
            with self._lock:
                self._pages[next_token] = rest
                while len(self._pages) > MAX_PENDING_PAGES:
                    del self._pages[next(iter(self._pages))]
        return _json(start_response, answer)

    @staticmethod
    def _moto_metrics(
        environ: dict[str, Any], query: dict[str, Any], account: str, moto: Any
    ) -> list[Any] | tuple[str, Any, bytes]:
        """Every metric moto lists for `account` (following its tokens), or its refusal."""
        found: list[Any] = []
        body = dict(query)
        for _ in range(MAX_MOTO_PAGES):
            status, headers, chunks = forward(moto, environ, body, account)
            if not status.startswith("200"):
                return status, headers, chunks
            answer = json.loads(chunks or b"{}")
            found.extend(answer.get("Metrics") or [])
            if not answer.get("NextToken"):
                break
            body = {**query, "NextToken": answer["NextToken"]}
        return found

    def _get_metric_data(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        request: dict[str, Any],
        requester: str,
        moto: Any,
        rest: Any,
    ) -> Iterable[bytes] | None:
        queries = request.get("MetricDataQueries")
        if not isinstance(queries, list) or not all(isinstance(q, dict) for q in queries):
            return None
        by_account: dict[str, list[dict[str, Any]]] = {}
        for query in queries:
            account = str(query.get("AccountId") or requester)
            by_account.setdefault(account, []).append({k: v for k, v in query.items() if k != "AccountId"})
        if set(by_account) <= {requester}:
            return None
        linked = set(self.sources(requester))
        results: list[Any] = []
        messages: list[Any] = []
        for account, group in by_account.items():
            if account != requester and account not in linked:  # AWS documents no answer: see the module's notes
                results.extend(
                    {"Id": q.get("Id"), "StatusCode": "Forbidden", "Timestamps": [], "Values": []} for q in group
                )
                continue
            app, as_account = (rest, "") if account == requester else (moto, account)
            status, headers, chunks = forward(app, environ, {**request, "MetricDataQueries": group}, as_account)
            if not status.startswith("200"):
                start_response(status, headers)
                return [chunks]
            answer = json.loads(chunks or b"{}")
            results.extend(answer.get("MetricDataResults") or [])
            messages.extend(answer.get("Messages") or [])
        return _json(start_response, {"MetricDataResults": results, "Messages": messages})
