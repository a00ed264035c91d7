"""CloudWatch calls: ListMetrics discovery and GetMetricData execution, with answer checking."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from botocore.parsers import ResponseParserError
from botocore.validate import ParamValidationDecorator

from exporter.aws import gate
from exporter.aws.parsing import WrappingParserFactory
from exporter.errors import BadAnswerError
from exporter.model import SeriesKey
from exporter.planner import Batch, QueryList
from exporter.results import Answer, merge_page

log = logging.getLogger(__name__)

# Bounds on NextToken chains, per call (and so per cycle: one discovery and one chain per batch). GetMetricData pages
# by datapoints, at most 100,800 a call (API reference); a batch's short windows fill one page. 100 pages of 500
# queries cost $0.50 at list price, where the earlier 1,000 cost $5 a cycle when a token never ended.
MAX_PAGES = 100
# ListMetrics returns 500 metrics a page: 200 pages is 100,000 series, far above what one namespace publishes.
MAX_LIST_PAGES = 200


def list_series(
    client: Any, namespace: str, recently_active: bool, linked: bool = False, own_account: str = ""
) -> list[SeriesKey]:
    """Every (metric, dimension set) in the namespace, following NextToken for at most MAX_LIST_PAGES pages.

    `linked` (a monitoring account, CloudWatch cross-account observability) asks for the linked source accounts'
    metrics too (`IncludeLinkedAccounts`); each series then carries its owning account unless it is `own_account`.

    Our own loop, not botocore's paginator: the paginator stops only on a token repeated twice in a row, so a token
    that changes on every page (with empty pages, MaxItems never binds) would never end.
    """
    kwargs: dict[str, Any] = {"Namespace": namespace}
    if recently_active:
        kwargs["RecentlyActive"] = "PT3H"
    if linked:
        kwargs["IncludeLinkedAccounts"] = True
    found: set[SeriesKey] = set()
    tokens: set[str] = set()
    for _ in range(MAX_LIST_PAGES):
        page = client.list_metrics(**kwargs)
        if not isinstance(page, dict):
            raise BadAnswerError("ListMetrics answer is not an object")
        found.update(parse_list_metrics_page(page, namespace, linked, own_account))
        token = page.get("NextToken")
        if not token:
            return sorted(found)
        if not isinstance(token, str) or token in tokens:
            raise BadAnswerError("ListMetrics returned a NextToken it had returned before")
        tokens.add(token)
        kwargs["NextToken"] = token
    raise BadAnswerError(f"ListMetrics pagination did not end after {MAX_LIST_PAGES} pages")


_ACCOUNT_ID = re.compile(r"\d{12}")


def parse_list_metrics_page(
    page: Mapping[str, Any], namespace: str, linked: bool = False, own_account: str = ""
) -> list[SeriesKey]:
    """SeriesKeys from one ListMetrics page; entries of other namespaces or with a broken shape are skipped.

    With `linked`, `OwningAccounts` is read: "a 1:1 mapping between each metric that is returned and the ID of the
    owning account" (ListMetricsOutput), so a list of another length is a bad answer, and an entry that is no
    12-digit account ID skips its metric. Without the member (AWS does not say what an account that is not a
    monitoring account answers) every series is the task's own.
    """
    metrics = page.get("Metrics")
    if not isinstance(metrics, list):
        raise BadAnswerError("ListMetrics answer has no Metrics list")
    owners = page.get("OwningAccounts") if linked else None
    if owners is not None and (not isinstance(owners, list) or len(owners) != len(metrics)):
        raise BadAnswerError("ListMetrics OwningAccounts does not map 1:1 to its Metrics")
    out = []
    for index, entry in enumerate(metrics):
        account = ""
        if owners is not None:
            owner = owners[index]
            if not isinstance(owner, str) or not _ACCOUNT_ID.fullmatch(owner):
                log.warning("skipping a ListMetrics entry in %s whose owning account is no account ID", namespace)
                continue
            account = "" if owner == own_account else owner
        try:
            if entry.get("Namespace", namespace) != namespace:
                continue
            dims = {str(d["Name"]): str(d["Value"]) for d in entry.get("Dimensions") or ()}
            out.append(SeriesKey.of(namespace, str(entry["MetricName"]), dims, account))
        except (KeyError, TypeError, AttributeError):
            log.warning("skipping a malformed ListMetrics entry in %s", namespace)
    return out


_OPERATION = "GetMetricData"
_LEAN = "_bedrock_batch_exporter_lean"  # set on a botocore client once its GetMetricData path is lean


class _LeanSerializer:
    """botocore's serializer, except that a JSON-protocol GetMetricData body is written by `json.dumps` directly.

    The planner's queries are already in the API's shape (str/int/bool only), so botocore's per-member walk over
    500 nested queries (a third of a cycle's CPU in the profile, docs/performance.md) only re-copied them. The
    envelope (target header, content type, the timestamps' wire form) still comes from botocore's own serializer.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def serialize_to_request(self, parameters: Any, operation_model: Any) -> Any:
        queries = parameters.get("MetricDataQueries") if isinstance(parameters, dict) else None
        if (
            operation_model.name != _OPERATION
            or getattr(operation_model.service_model, "resolved_protocol", None) != "json"
            or not isinstance(queries, list)
        ):
            if isinstance(queries, QueryList):  # another protocol: botocore encodes the queries themselves
                parameters = {**parameters, "MetricDataQueries": queries.materialize()}
            return self._inner.serialize_to_request(parameters, operation_model)
        rest = {k: v for k, v in parameters.items() if k != "MetricDataQueries"}
        request = self._inner.serialize_to_request({**rest, "MetricDataQueries": []}, operation_model)
        body = json.loads(request["body"])
        cached = getattr(queries, "json_text", "")
        if cached:  # the planner encoded this batch's queries once; splice them in
            body["MetricDataQueries"] = []
            text = json.dumps(body)
            request["body"] = text.replace('"MetricDataQueries": []', '"MetricDataQueries": ' + cached, 1).encode()
        else:
            body["MetricDataQueries"] = list(queries)
            request["body"] = json.dumps(body).encode("utf-8")
        return request


class _LeanParser:
    """botocore's parser, except that a 2xx JSON GetMetricData answer is decoded by orjson alone.

    orjson decodes a 500-result answer 1.7x (no datapoints) to 4.7x (five datapoints each) faster than `json.loads`
    (docs/performance.md). What orjson refuses and `json.loads` accepts (`NaN`, `Infinity`, `1e999`) is decoded by
    `json.loads`, so such an answer is checked exactly as before (an infinite timestamp is a bad answer); what neither
    reads goes to botocore's parser. An integer beyond 64 bits comes out as the float that reading json's integer
    gives (values are read as floats either way; tests/unit/test_lean_answers.py).

    Timestamps stay epoch-second numbers (exporter.results reads numbers and datetimes alike) instead of one
    datetime object per datapoint. Anything unusual (not an object, a timestamp that is not a number) goes to
    botocore's parser unchanged, and so do errors: their classification and retries are botocore's.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def parse(self, response: dict[str, Any], shape: Any) -> Any:
        body = response.get("body")
        if getattr(shape, "name", None) != "GetMetricDataOutput" or response.get("status_code", 500) >= 300:
            return self._inner.parse(response, shape)
        try:
            decoded = orjson.loads(body) if body else {}
        except (ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
            try:  # what orjson refuses and json reads (NaN, Infinity, 1e999) is read as it always was
                decoded = json.loads(body or b"")
            except (ValueError, TypeError):
                return self._botocore(response, shape)
            except RecursionError:  # orjson stops at 1,024 levels, json at the interpreter's recursion limit
                raise BadAnswerError("GetMetricData answer is nested too deeply to read") from None
        if not _plain_answer(decoded):
            return self._botocore(response, shape)
        parsed = self._inner.parse({**response, "body": b"{}"}, shape)  # ResponseMetadata exactly as botocore's
        for key in ("MetricDataResults", "NextToken", "Messages"):
            if key in decoded and decoded[key] is not None:
                parsed[key] = decoded[key]
        return parsed

    def _botocore(self, response: dict[str, Any], shape: Any) -> Any:
        """botocore's parser on a 2xx answer the lean path does not take. Where it breaks on a shape the API does not
        have (a `MetricDataResults` object, a result that is a number, a timestamp that is no time), that is a bad
        answer, counted as one, not an AttributeError from inside botocore; its own ResponseParserError stays."""
        try:
            return self._inner.parse(response, shape)
        except ResponseParserError:
            raise
        except (AttributeError, TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
            raise BadAnswerError(f"GetMetricData answer does not fit the API's shape ({type(exc).__name__})") from None


def _plain_answer(decoded: Any) -> bool:
    """True when botocore's parser would only copy this answer: an object whose `Messages` and `MetricDataResults` are
    lists (or absent) and whose datapoint times are numbers."""
    if not isinstance(decoded, dict):
        return False
    messages = decoded.get("Messages")
    if messages is not None and not isinstance(messages, list):
        return False
    results = decoded.get("MetricDataResults")
    if results is None:
        return True
    if not isinstance(results, list):
        return False
    for result in results:
        if not isinstance(result, dict):
            return False
        stamps = result.get("Timestamps")
        if stamps is None:
            continue
        if not isinstance(stamps, list):
            return False
        for stamp in stamps:  # a loop, not all(<generator>): this runs for 20,000 results a cycle
            kind = type(stamp)
            if kind is not int and kind is not float:
                return False
    return True


def lean_get_metric_data(client: Any) -> None:
    """Give a botocore CloudWatch client the lean GetMetricData path (once); signing, retries, credential refresh,
    error parsing and event hooks stay botocore's. Objects that are not botocore clients are left alone."""
    if getattr(client, _LEAN, False):
        return
    serializer = getattr(client, "_serializer", None)
    endpoint: Any = getattr(client, "_endpoint", None)
    factory = getattr(endpoint, "_response_parser_factory", None)
    if serializer is None or factory is None or not hasattr(serializer, "serialize_to_request"):
        return
    if isinstance(serializer, ParamValidationDecorator):  # a client that validates keeps botocore's whole path
        return
    client._serializer = _LeanSerializer(serializer)
    endpoint._response_parser_factory = WrappingParserFactory(factory, "json", _LeanParser)
    setattr(client, _LEAN, True)


def run_batch(
    client: Any,
    batch: Batch,
    on_page: Callable[[int], None] | None = None,
    on_out_of_window: Callable[[int], None] | None = None,
) -> dict[str, Answer]:
    """Run one batch to the last page; what the pages said per query id (exporter.results reads it).
    `on_out_of_window` is told the datapoints of a page dropped for lying outside the requested window."""
    lean_get_metric_data(client)
    gate.hook(client)
    queries = batch.to_api()
    kwargs: dict[str, Any] = {
        # text alone only where the lean serializer splices it in; anything else gets the queries themselves
        "MetricDataQueries": queries if getattr(client, _LEAN, False) else queries.materialize(),
        "StartTime": datetime.fromtimestamp(batch.start, UTC),
        "EndTime": datetime.fromtimestamp(batch.end, UTC),
        "ScanBy": "TimestampDescending",
    }
    ids = batch.query_ids
    insight_ids = {e.id for e in batch.expressions}
    answers: dict[str, Answer] = {}
    seen_tokens: set[str] = set()
    for _ in range(MAX_PAGES):
        answer = client.get_metric_data(**kwargs)
        gate.resume()  # each call gives its gate slot back while it waits (exporter.aws.gate): take one again
        if on_page is not None:
            on_page(batch.size)
        if not isinstance(answer, dict):
            raise BadAnswerError("GetMetricData answer is not an object")
        window = (float(batch.start), float(batch.end))
        dropped = merge_page(answers, answer.get("MetricDataResults"), ids, insight_ids, window)
        if dropped and on_out_of_window is not None:
            on_out_of_window(dropped)
        for message in answer.get("Messages") or ():
            log.info(
                "GetMetricData message: %s", message.get("Value", message) if isinstance(message, dict) else message
            )
        token = answer.get("NextToken")
        if not token:
            return answers
        if not isinstance(token, str) or token in seen_tokens:
            raise BadAnswerError("GetMetricData returned the same NextToken twice")
        seen_tokens.add(token)
        kwargs["NextToken"] = token
    raise BadAnswerError(f"GetMetricData pagination did not end after {MAX_PAGES} pages")
