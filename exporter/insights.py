"""CloudWatch Metrics Insights: the supported SQL subset (parsed and validated) and result-label parsing (pure).

Supported, keywords case-insensitive, identifiers case-sensitive (see docs/insights.md):

    SELECT AVG|SUM|MIN|MAX|COUNT(metric)
    FROM "namespace" | FROM SCHEMA("namespace"[, key ...])
    [WHERE key = 'value' | key != 'value' [AND ...]]
    [GROUP BY key[, key ...]]
    [ORDER BY AVG|SUM|MIN|MAX|COUNT() [ASC|DESC]]
    [LIMIT n]

What is sent double-quotes every identifier: AWS's "Metrics Insights query components and syntax" page says "It is
also valid to enclose any namespace, metric name, or label in double quotation marks", and its reserved-keyword list
(exporter/demo/insights_keywords.py) holds ordinary metric and dimension names such as Count, Operation and Type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

FUNCTIONS = ("AVG", "SUM", "MIN", "MAX", "COUNT")
OPERATORS = ("=", "!=")  # the WHERE operators AWS documents ("Metrics Insights query components and syntax")
MAX_SERIES_PER_QUERY = 500  # CloudWatch returns at most 500 series per Metrics Insights query
# botocore cloudwatch model: MetricDataQuery.Expression is a MetricExpression, a string of 1 to 2,048 characters.
MAX_EXPRESSION_LENGTH = 2048
MAX_QUERY_TEXT = 16 * MAX_EXPRESSION_LENGTH  # refused before tokenising: no config needs more, whatever its spacing
SUBSET = (
    "SELECT FUNC(metric) FROM ns|SCHEMA(ns, keys) [WHERE key = 'v' | key != 'v' [AND ...]] [GROUP BY keys] "
    "[ORDER BY FUNC() ASC|DESC] [LIMIT n]"
)

_KEYWORDS = frozenset({"SELECT", "FROM", "SCHEMA", "WHERE", "AND", "GROUP", "BY", "ORDER", "ASC", "DESC", "LIMIT"})
_UNSUPPORTED_KEYWORDS = frozenset({"OR", "NOT", "LIKE", "IN", "HAVING", "AS", "JOIN", "UNION", "DISTINCT"})
# Letters, digits and underscore may stand unquoted (AWS: names with other characters "must be surrounded by double
# quote marks"); a run of digits alone is a number.
_BARE = re.compile(r"[A-Za-z0-9_]+")
_PUNCTUATION = "(),="
_ESCAPES = {"\\": "\\", "'": "'", '"': '"'}


class InsightsSyntaxError(ValueError):
    """A query outside the supported subset, or too long once rendered; the message says what and where."""


@dataclass(frozen=True, slots=True)
class _Token:
    # "word" (bare identifier or keyword), "ident" (double-quoted), "string" (single-quoted), "number", "punct"
    kind: str
    text: str
    at: int

    @property
    def keyword(self) -> str | None:
        return self.text.upper() if self.kind == "word" and self.text.upper() in _KEYWORDS else None


@dataclass(frozen=True, slots=True)
class InsightsQuery:
    """One parsed Metrics Insights query of the supported subset."""

    function: str
    metric: str
    namespace: str
    schema: tuple[str, ...] | None  # None: FROM "namespace" (any dimensions); else the exact dimension keys
    where: tuple[tuple[str, str, str], ...] = ()  # (key, "=" | "!=", value), joined by AND
    group_by: tuple[str, ...] = ()
    order_by: tuple[str, str] | None = None  # (function, "ASC" | "DESC")
    limit: int | None = None

    def expression(self) -> str:
        """The query as sent to CloudWatch: same meaning, every identifier double-quoted, keywords upper-case."""
        if self.schema is None:
            source = _quote_ident(self.namespace)
        else:
            source = "SCHEMA(" + ", ".join(map(_quote_ident, (self.namespace, *self.schema))) + ")"
        parts = [f"SELECT {self.function}({_quote_ident(self.metric)}) FROM {source}"]  # noqa: S608 (not SQL)
        if self.where:
            parts.append(
                "WHERE " + " AND ".join(f"{_quote_ident(k)} {op} {_quote_string(v)}" for k, op, v in self.where)
            )
        if self.group_by:
            parts.append("GROUP BY " + ", ".join(map(_quote_ident, self.group_by)))
        if self.order_by:
            parts.append(f"ORDER BY {self.order_by[0]}() {self.order_by[1]}")
        if self.limit is not None:
            parts.append(f"LIMIT {self.limit}")
        return " ".join(parts)


def _escape_quotes(text: str) -> str:
    # AWS: a quotation mark (either kind) inside a name is escaped "with a backslash"; backslashes never reach here
    return text.replace('"', '\\"').replace("'", "\\'")


def _quote_ident(name: str) -> str:
    return '"' + _escape_quotes(name) + '"'


def _quote_string(value: str) -> str:
    return "'" + _escape_quotes(value) + "'"


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "\"'":
            value, end = _quoted(text, i)
            out.append(_Token("ident" if char == '"' else "string", value, i))
            i = end
        elif text.startswith("!=", i):
            out.append(_Token("punct", "!=", i))
            i += 2
        elif char in _PUNCTUATION:
            out.append(_Token("punct", char, i))
            i += 1
        elif match := _BARE.match(text, i):
            out.append(_Token("number" if match.group().isdigit() else "word", match.group(), i))
            i = match.end()
        elif char in "!<>~":
            raise InsightsSyntaxError(
                f"unsupported operator at position {i + 1}: WHERE supports only key = 'value' and key != 'value'"
            )
        else:
            raise InsightsSyntaxError(f"unsupported character {char!r} at position {i + 1}")
    return out


def _quoted(text: str, start: int) -> tuple[str, int]:
    quote, i, out = text[start], start + 1, []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        elif char == quote:
            value = "".join(out)
            if "\\" in value:
                # AWS documents a backslash only as the escape of a quotation mark; how CloudWatch would read an
                # escaped backslash is not documented, so a name or value holding one is refused, not guessed at.
                raise InsightsSyntaxError(
                    f"a backslash inside the quotes starting at position {start + 1}: CloudWatch documents no way "
                    "to write one"
                )
            return value, i + 1
        else:
            out.append(char)
            i += 1
    raise InsightsSyntaxError(f"unterminated {quote}...{quote} starting at position {start + 1}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def fail(self, expected: str) -> InsightsSyntaxError:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.upper() in _UNSUPPORTED_KEYWORDS:
            return InsightsSyntaxError(
                f"unsupported {token.text.upper()} at position {token.at + 1}: the supported subset is {SUBSET}"
            )
        found = "the end of the query" if token is None else f"{token.text!r} at position {token.at + 1}"
        return InsightsSyntaxError(f"unsupported query: expected {expected}, found {found}")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.keyword == word:
            self.pos += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            raise self.fail(word)

    def punct(self, char: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == char:
            self.pos += 1
            return True
        return False

    def expect_punct(self, char: str) -> None:
        if not self.punct(char):
            raise self.fail(f"{char!r}")

    def identifier(self, what: str) -> str:
        token = self.peek()
        if token is not None and (token.kind == "ident" or (token.kind == "word" and token.keyword is None)):
            if token.kind == "word" and token.text.upper() in _UNSUPPORTED_KEYWORDS:
                raise self.fail(what)
            self.pos += 1
            if not token.text:
                raise InsightsSyntaxError(f"empty {what} at position {token.at + 1}")
            return token.text
        raise self.fail(what)

    def function(self) -> str:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.upper() in FUNCTIONS:
            self.pos += 1
            return token.text.upper()
        followed_by_paren = self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1].text == "("
        if token is not None and token.kind == "word" and followed_by_paren:
            raise InsightsSyntaxError(
                f"unsupported function {token.text!r} at position {token.at + 1}: use one of {', '.join(FUNCTIONS)}"
            )
        raise self.fail(f"a function ({', '.join(FUNCTIONS)})")

    def keys(self, what: str) -> list[str]:
        keys = [self.identifier(what)]
        while self.punct(","):
            keys.append(self.identifier(what))
        return keys

    def condition(self) -> tuple[str, str, str]:
        key = self.identifier("a dimension key")
        token = self.peek()
        if token is None or token.kind != "punct" or token.text not in OPERATORS:
            raise self.fail("= or !=")
        self.pos += 1
        value = self.peek()
        if value is None or value.kind != "string":
            raise self.fail("a 'single-quoted' value")
        self.pos += 1
        return key, token.text, value.text

    def parse(self) -> InsightsQuery:
        self.expect_keyword("SELECT")
        function = self.function()
        self.expect_punct("(")
        metric = self.identifier("a metric name")
        self.expect_punct(")")
        self.expect_keyword("FROM")
        schema: tuple[str, ...] | None = None
        if self.keyword("SCHEMA"):
            self.expect_punct("(")
            namespace = self.identifier("a namespace")
            dims = self.keys("a dimension key") if self.punct(",") else []
            self.expect_punct(")")
            if len(set(dims)) != len(dims):
                raise InsightsSyntaxError("SCHEMA lists a dimension key more than once")
            schema = tuple(dims)
        else:
            namespace = self.identifier('a namespace or SCHEMA("namespace", keys...)')
        where: list[tuple[str, str, str]] = []
        if self.keyword("WHERE"):
            where.append(self.condition())
            while self.keyword("AND"):
                where.append(self.condition())
        group_by: list[str] = []
        if self.keyword("GROUP"):
            self.expect_keyword("BY")
            group_by = self.keys("a dimension key")
            if len(set(group_by)) != len(group_by):
                raise InsightsSyntaxError("GROUP BY lists a key more than once")
        order_by: tuple[str, str] | None = None
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            order_function = self.function()
            self.expect_punct("(")
            self.expect_punct(")")
            direction = "DESC" if self.keyword("DESC") else "ASC"
            if direction == "ASC":
                self.keyword("ASC")
            order_by = (order_function, direction)
        limit: int | None = None
        if self.keyword("LIMIT"):
            token = self.peek()
            if token is None or token.kind != "number":
                raise self.fail("a number of series")
            self.pos += 1
            limit = int(token.text) if len(token.text) <= 6 else MAX_SERIES_PER_QUERY + 1
            if not 1 <= limit <= MAX_SERIES_PER_QUERY:
                raise InsightsSyntaxError(
                    f"LIMIT {token.text[:24]} is out of range: CloudWatch returns 1 to {MAX_SERIES_PER_QUERY} "
                    "series per query"
                )
        if self.peek() is not None:
            raise self.fail("the end of the query (clauses go in the order WHERE, GROUP BY, ORDER BY, LIMIT)")
        return InsightsQuery(function, metric, namespace, schema, tuple(where), tuple(group_by), order_by, limit)


def parse(text: str) -> InsightsQuery:
    """Parse one query of the supported subset; raises InsightsSyntaxError naming what is unsupported.

    The text sent (InsightsQuery.expression) is what must fit GetMetricData's 2,048-character Expression.
    """
    if not text.strip():
        raise InsightsSyntaxError("the query is empty")
    if len(text) > MAX_QUERY_TEXT:
        raise InsightsSyntaxError(
            f"the query is {len(text)} characters; CloudWatch accepts at most {MAX_EXPRESSION_LENGTH}"
        )
    query = _Parser(text).parse()
    sent = len(query.expression())
    if sent > MAX_EXPRESSION_LENGTH:
        raise InsightsSyntaxError(
            f"the query as sent to CloudWatch (every name double-quoted) is {sent} characters; GetMetricData accepts "
            f"at most {MAX_EXPRESSION_LENGTH} in an Expression: shorten it (fewer WHERE conditions or GROUP BY keys)"
        )
    return query


def group_values(label: str, keys: Sequence[str]) -> tuple[str, ...] | None:
    """The GROUP BY values of one result series, from its Label; None when the label does not split cleanly.

    AWS documents no format for the Label of a GROUP BY series. Assumed: the whole label for one key; for several,
    the values in GROUP BY order joined by one space. A label that does not split into exactly that many non-empty
    parts (a value holding a space, or another format) gives None: never a value attributed to the wrong key.
    """
    if not keys:
        return ()
    if len(keys) == 1:
        return (label,) if label else None  # CloudWatch dimension values are never empty (Dimension.Value min 1)
    parts = label.split(" ")
    if len(parts) != len(keys) or not all(parts):
        return None
    return tuple(parts)
