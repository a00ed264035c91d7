"""The simulated AWS's Metrics Insights: evaluates queries over moto's stored datapoints, as CloudWatch documents them.

moto answers GetMetricData for MetricStat queries but does not evaluate Metrics Insights. A GetMetricData request
(awsJson1_0: POST / with X-Amz-Target ...GetMetricData) that carries a `SELECT ...` expression is split: the
MetricStat queries go to moto, the Insights query is evaluated here, and the answers are merged.

Written from AWS's pages, not from the exporter's parser (so a query the exporter renders wrongly fails here too):
- grammar, quoting, WHERE operators, GROUP BY order and `Other`, ORDER BY, LIMIT: "Metrics Insights query components
  and syntax" (AmazonCloudWatch/latest/monitoring/cloudwatch-metrics-insights-querylanguage.html);
- reserved words that must be double-quoted: "Reserved keywords" (exporter/demo/insights_keywords.py cites it);
- one Insights query and at most 500 queries per call: the GetMetricData API reference (botocore's
  GetMetricDataInput.MetricDataQueries documentation); Expression of 1 to 2,048 characters: botocore's MetricExpression.

How CloudWatch answers a query it cannot read is not in its documentation: GetMetricData lists only InvalidNextToken
among its errors, and MetricDataResult.StatusCode has no value for a bad query (Complete, InternalError, PartialData,
Forbidden). Users report a whole-call HTTP 400 `ValidationError`, e.g. "Invalid syntax. Reserved keyword 'Count' must
be surrounded by double quotes" (grafana/grafana#93494) and "SELECT is not available in this region"
(grafana/grafana#57562); this evaluator answers the same way.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.demo.insights_keywords import is_reserved
from exporter.demo.wsgi import StartResponse, forward

JSON_TYPE = "application/x-amz-json-1.0"
MAX_BODY = 8 << 20
MAX_QUERIES = 500  # GetMetricDataInput.MetricDataQueries: "as many as 500 MetricDataQuery structures"
MAX_INSIGHTS = 1  # GetMetricData: "each GetMetricData operation can include only one query"
MAX_EXPRESSION = 2048  # botocore MetricExpression: max 2048
MAX_SERIES = 500  # "each query can return no more than 500 time series"; "The maximum value [of LIMIT] is 500"
NULL_GROUP = "Other"  # "a null group named Other is returned"
AGGREGATES = ("AVG", "COUNT", "MAX", "MIN", "SUM")  # "The valid values for FUNCTION"

# One token per match; anything else is a syntax error. A backslash escapes a quotation mark inside quotes (AWS);
# what an escaped backslash means is not documented: here it stands for one backslash.
_LEXER = re.compile(
    r"""\s*(?:
        (?P<quoted>"(?:\\.|[^"\\])*")
      | (?P<value>'(?:\\.|[^'\\])*')
      | (?P<symbol>!=|[(),=])
      | (?P<word>[A-Za-z0-9_]+)
    )""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


class QueryError(Exception):
    """CloudWatch would refuse the query: the whole GetMetricData call fails with ValidationError."""


@dataclass(frozen=True, slots=True)
class Statement:
    """One Metrics Insights query as CloudWatch reads it."""

    aggregate: str
    metric: str
    namespace: str
    schema: frozenset[str] | None  # SCHEMA(ns, keys...): exactly these dimension keys; None: FROM ns (any)
    conditions: tuple[tuple[str, bool, str], ...]  # (key, must equal?, value), all must hold (AND)
    group_by: tuple[str, ...]
    order: tuple[str, bool] | None  # (aggregate, descending)
    limit: int


def _lex(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos, end = 0, len(text.rstrip())
    while pos < end:
        match = _LEXER.match(text, pos)
        if match is None or match.lastgroup is None:
            raise QueryError(f"Invalid syntax at position {pos + 1}")
        raw = match.group(match.lastgroup)
        if match.lastgroup in ("quoted", "value"):
            raw = _ESCAPED.sub(lambda m: m.group(1), raw[1:-1])
        out.append((match.lastgroup, raw))
        pos = match.end()
    return out


class _Reader:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.at = 0

    def peek_word(self) -> str | None:
        if self.at < len(self.tokens) and self.tokens[self.at][0] == "word":
            return self.tokens[self.at][1].upper()
        return None

    def take_word(self, *words: str) -> str | None:
        word = self.peek_word()
        if word is not None and word in words:
            self.at += 1
            return word
        return None

    def need_word(self, *words: str) -> str:
        word = self.take_word(*words)
        if word is None:
            raise QueryError(f"Invalid syntax: expected {' or '.join(words)}{self.where()}")
        return word

    def take_symbol(self, symbol: str) -> bool:
        if self.at < len(self.tokens) and self.tokens[self.at] == ("symbol", symbol):
            self.at += 1
            return True
        return False

    def need_symbol(self, symbol: str) -> None:
        if not self.take_symbol(symbol):
            raise QueryError(f"Invalid syntax: expected '{symbol}'{self.where()}")

    def where(self) -> str:
        return f" near '{self.tokens[self.at][1]}'" if self.at < len(self.tokens) else " at the end of the query"

    def name(self) -> str:
        """A namespace, metric name or label key: double-quoted, or bare when it is not a reserved keyword."""
        if self.at >= len(self.tokens) or self.tokens[self.at][0] not in ("quoted", "word"):
            raise QueryError(f"Invalid syntax: expected a name{self.where()}")
        kind, text = self.tokens[self.at]
        if kind == "word" and is_reserved(text):
            raise QueryError(f"Invalid syntax. Reserved keyword '{text}' must be surrounded by double quotes")
        if not text:
            raise QueryError("Invalid syntax: empty name")
        self.at += 1
        return text

    def label_value(self) -> str:
        if self.at < len(self.tokens) and self.tokens[self.at][0] == "value":
            self.at += 1
            return self.tokens[self.at - 1][1]
        raise QueryError(f"Invalid syntax: label values must be in single quotes{self.where()}")

    def statement(self) -> Statement:
        self.need_word("SELECT")
        aggregate = self.need_word(*AGGREGATES)
        self.need_symbol("(")
        metric = self.name()
        self.need_symbol(")")
        self.need_word("FROM")
        schema: frozenset[str] | None = None
        if self.take_word("SCHEMA"):
            self.need_symbol("(")
            namespace = self.name()
            keys = []
            while self.take_symbol(","):
                keys.append(self.name())
            self.need_symbol(")")
            schema = frozenset(keys)
        else:
            namespace = self.name()
        conditions: list[tuple[str, bool, str]] = []
        if self.take_word("WHERE"):
            while True:
                key = self.name()
                if self.take_symbol("="):
                    equal = True
                elif self.take_symbol("!="):
                    equal = False
                else:
                    raise QueryError(f"Invalid syntax: expected = or !={self.where()}")
                conditions.append((key, equal, self.label_value()))
                if not self.take_word("AND"):
                    break
        group_by: list[str] = []
        if self.take_word("GROUP"):
            self.need_word("BY")
            group_by.append(self.name())
            while self.take_symbol(","):
                group_by.append(self.name())
        order: tuple[str, bool] | None = None
        if self.take_word("ORDER"):
            self.need_word("BY")
            function = self.need_word(*AGGREGATES)
            self.need_symbol("(")
            self.need_symbol(")")
            order = (function, self.take_word("DESC", "ASC") == "DESC")  # "If you omit this, the default is ASC"
        limit = MAX_SERIES
        if self.take_word("LIMIT"):
            if self.peek_word() is None or not self.tokens[self.at][1].isdigit():
                raise QueryError(f"Invalid syntax: LIMIT takes a number{self.where()}")
            digits = self.tokens[self.at][1]
            self.at += 1
            # AWS gives only the maximum; a LIMIT below 1 is refused here too (AWS is silent on it)
            if len(digits) > 3 or not 1 <= int(digits) <= MAX_SERIES:
                raise QueryError(f"LIMIT must be between 1 and {MAX_SERIES}")
            limit = int(digits)
        if self.at < len(self.tokens):
            raise QueryError(f"Invalid syntax: unexpected '{self.tokens[self.at][1]}'")
        return Statement(aggregate, metric, namespace, schema, tuple(conditions), tuple(group_by), order, limit)


def read(text: str) -> Statement:
    """The statement CloudWatch would read from `text`; QueryError where it would refuse it."""
    if not 1 <= len(text) <= MAX_EXPRESSION:
        raise QueryError(f"Expression must be 1 to {MAX_EXPRESSION} characters")
    return _Reader(text).statement()


def _aggregate(function: str, values: Sequence[float]) -> float:
    if function == "AVG":
        return sum(values) / len(values)
    if function == "SUM":
        return sum(values)
    if function == "MIN":
        return min(values)
    if function == "MAX":
        return max(values)
    return float(len(values))  # COUNT


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _stamp(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _matches(dims: dict[str, str], statement: Statement) -> bool:
    if statement.schema is not None and set(dims) != statement.schema:
        return False
    # `key != 'v'` on a metric without `key`: AWS is silent; here it matches (the metric has no value 'v')
    return all((dims.get(key) == value) == equal for key, equal, value in statement.conditions)


def evaluate(
    statement: Statement,
    data: Iterable[Any],
    start: float,
    end: float,
    period: int,
    query_id: str,
    label: str | None = None,
    newest_first: bool = True,
) -> list[dict[str, Any]]:
    """MetricDataResults of one statement over moto MetricDatum-like objects (namespace, name, dimensions, timestamp,
    value): observations in [start, end) bucketed by period from start, one series per group."""
    groups: dict[tuple[str, ...], dict[int, list[float]]] = {}
    for datum in data:
        value = getattr(datum, "value", None)  # statistic sets (no single value) are not observations here
        if value is None or datum.namespace != statement.namespace or datum.name != statement.metric:
            continue
        dims = {d.name: d.value for d in datum.dimensions}
        when = _stamp(datum.timestamp)
        if not _matches(dims, statement) or not start <= when < end:
            continue
        group = tuple(dims.get(k, NULL_GROUP) for k in statement.group_by)
        bucket = int(start + (when - start) // period * period)
        groups.setdefault(group, {}).setdefault(bucket, []).append(float(value))
    series = {
        group: {b: _aggregate(statement.aggregate, vs) for b, vs in buckets.items()}
        for group, buckets in groups.items()
    }
    ordered = sorted(series)  # "by default the results are ordered in alphabetical ascending order"
    if statement.order is not None:
        # "The FUNCTION is used to calculate a single scalar value from each returned time series"
        function, descending = statement.order
        ordered.sort(key=lambda g: _aggregate(function, list(series[g].values())), reverse=descending)
    ordered = ordered[: statement.limit]
    if not ordered:
        return [{"Id": query_id, "Label": label or query_id, "Timestamps": [], "Values": [], "StatusCode": "Complete"}]
    results = []
    for group in ordered:
        points = sorted(series[group].items(), reverse=newest_first)
        results.append(
            {
                "Id": query_id,
                # AWS documents no label format for a GROUP BY series: the values joined by a space is assumed
                "Label": " ".join(group) if statement.group_by else (label or query_id),
                "Timestamps": [float(b) for b, _ in points],
                "Values": [v for _, v in points],
                "StatusCode": "Complete",
            }
        )
    return results


def _error(start_response: StartResponse, code: str, message: str) -> list[bytes]:
    body = json.dumps({"__type": code, "message": message}).encode()
    start_response(
        "400 Bad Request",
        [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body))), ("x-amzn-query-error", f"{code};Sender")],
    )
    return [body]


def answer(
    environ: dict[str, Any],
    start_response: StartResponse,
    moto: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
    data: Callable[[], Iterable[Any]],
) -> Iterable[bytes] | None:
    """Answer a GetMetricData request that holds an Insights query; None (body left readable) for any other."""
    if not environ.get("HTTP_X_AMZ_TARGET", "").endswith(".GetMetricData"):
        return None
    length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
    raw = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        request = json.loads(raw or b"{}")
        queries = list(request.get("MetricDataQueries") or [])
    except (ValueError, AttributeError):
        return None
    insights = [q for q in queries if str(q.get("Expression", "")).lstrip()[:6].upper() == "SELECT"]
    if not insights:
        return None
    if len(queries) > MAX_QUERIES:
        return _error(start_response, "ValidationError", f"at most {MAX_QUERIES} queries per call")
    if len(insights) > MAX_INSIGHTS:
        return _error(
            start_response,
            "ValidationError",
            "a GetMetricData call can include only one Metrics Insights query",
        )
    try:
        statements = [(q, read(str(q["Expression"]))) for q in insights]
    except QueryError as exc:
        return _error(start_response, "ValidationError", str(exc))
    start, end = _epoch(request["StartTime"]), _epoch(request["EndTime"])
    newest_first = request.get("ScanBy", "TimestampDescending") == "TimestampDescending"
    results: list[dict[str, Any]] = []
    others = [q for q in queries if q not in insights]
    messages: list[Any] = []
    if others:
        status, headers, chunks = forward(moto, environ, {**request, "MetricDataQueries": others})
        if not status.startswith("200"):
            start_response(status, headers)
            return [chunks]
        moto_answer = json.loads(chunks or b"{}")
        results.extend(moto_answer.get("MetricDataResults") or [])
        messages.extend(moto_answer.get("Messages") or [])
    snapshot = list(data())
    for item, statement in statements:
        period = int(item.get("Period") or 60)
        if period <= 0 or not math.isfinite(period):
            return _error(start_response, "ValidationError", "Period must be positive")
        results.extend(
            evaluate(statement, snapshot, start, end, period, str(item["Id"]), item.get("Label"), newest_first)
        )
    body = json.dumps({"MetricDataResults": results, "Messages": messages}).encode()
    start_response("200 OK", [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body)))])
    return [body]
