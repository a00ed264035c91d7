"""The Metrics Insights subset: parsing, labels, planning under CloudWatch's limits, answers, config, evaluator."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from exporter.config import ConfigError, load_config_text
from exporter.demo.insights import QueryError, Statement, evaluate, read
from exporter.demo.insights_keywords import RESERVED_KEYWORDS, is_reserved
from exporter.insights import MAX_EXPRESSION_LENGTH, InsightsQuery, InsightsSyntaxError, group_values, parse
from exporter.model import MissingData, ResolvedInsights, ResolvedMetric
from exporter.planner import MAX_QUERIES_PER_CALL, Batch, SeriesKey, plan
from exporter.preflight import config_problems

EXAMPLE = 'SELECT AVG(NumberOfRecordsPendingProcessing) FROM SCHEMA("AWS/Bedrock/Batch", ModelId) GROUP BY ModelId'
EXAMPLE_SENT = (
    'SELECT AVG("NumberOfRecordsPendingProcessing") FROM SCHEMA("AWS/Bedrock/Batch", "ModelId") GROUP BY "ModelId"'
)
RESERVED_QUERY = 'SELECT SUM("Count") FROM "Custom/App" GROUP BY "Operation"'


def test_parses_the_blog_query() -> None:
    query = parse(EXAMPLE)
    assert query == InsightsQuery(
        "AVG", "NumberOfRecordsPendingProcessing", "AWS/Bedrock/Batch", ("ModelId",), (), ("ModelId",)
    )
    assert query.expression() == EXAMPLE_SENT


@pytest.mark.parametrize(
    "text",
    [
        'select sum(M) from "ns"',
        "SELECT COUNT(M) FROM ns WHERE a = 'x' AND b = 'it\\'s' GROUP BY a, b ORDER BY MAX() DESC LIMIT 10",
        "SELECT COUNT(M) FROM ns WHERE a != 'x' AND b = 'say \"hi\"' AND \"k\\'s\" != 'y'",
        'SELECT MIN("odd-metric") FROM SCHEMA("A/B")',
        "SELECT SUM(5XXError) FROM ns GROUP BY Count",
        RESERVED_QUERY,
        'SELECT MAX(M) FROM SCHEMA("A/B", "Group", k2) ORDER BY AVG()',
        "SELECT AVG(M) FROM ns LIMIT 500",
    ],
)
def test_supported_queries_round_trip(text: str) -> None:
    query = parse(text)
    assert parse(query.expression()) == query


def test_clause_details() -> None:
    query = parse("SELECT COUNT(M) FROM ns WHERE a = 'x' AND b = 'it\\'s' GROUP BY a, b ORDER BY MAX() DESC LIMIT 10")
    assert query.where == (("a", "=", "x"), ("b", "=", "it's"))
    assert query.group_by == ("a", "b")
    assert query.order_by == ("MAX", "DESC")
    assert query.limit == 10
    assert query.schema is None
    assert parse("SELECT AVG(M) FROM ns ORDER BY SUM()").order_by == ("SUM", "ASC")
    assert parse("SELECT AVG(M) FROM ns WHERE a!='x' AND b = 'y'").where == (("a", "!=", "x"), ("b", "=", "y"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("SELECT P99(M) FROM ns", "unsupported function 'P99'"),
        ("SELECT AVG(M) FROM ns WHERE a > 'x'", "unsupported operator"),
        ("SELECT AVG(M) FROM ns WHERE a <> 'x'", "unsupported operator"),
        ("SELECT AVG(M) FROM ns WHERE a ! 'x'", "unsupported operator"),
        ("SELECT AVG(M) FROM ns WHERE a 'x'", "expected = or !="),
        ('SELECT AVG("a\\\\b") FROM ns', "backslash"),
        ("SELECT AVG(M) FROM ns LIMIT 99999999999999999999", "LIMIT 99999999999999999999 is out of range"),
        ("SELECT AVG(123) FROM ns", "expected a metric name"),
        ("SELECT AVG(M) FROM ns WHERE a = 'x' OR b = 'y'", "unsupported OR"),
        ("SELECT AVG(M) FROM ns WHERE a LIKE 'x%'", "unsupported LIKE"),
        ("SELECT AVG(M) FROM ns WHERE a IN ('x')", "unsupported IN"),
        ("SELECT AVG(M) FROM ns WHERE a = x", "single-quoted"),
        ("SELECT AVG(M) FROM ns LIMIT 501", "LIMIT 501"),
        ("SELECT AVG(M) FROM ns LIMIT 0", "LIMIT 0"),
        ("SELECT AVG(M) FROM ns GROUP BY a LIMIT 2 ORDER BY MAX()", "clauses go in the order"),
        ("SELECT AVG(M) FROM ns GROUP BY a, a", "more than once"),
        ("SELECT AVG(M), MAX(M) FROM ns", "expected FROM"),
        ("SELECT AVG(M) FROM ns;", "unsupported character ';'"),
        ('SELECT AVG(M) FROM "ns', "unterminated"),
        ("SELECT AVG(M) FROM SCHEMA(ns, a, a)", "more than once"),
        ("SELECT AVG(M) FROM ns ORDER BY AVG(M)", "expected ')'"),
    ],
)
def test_unsupported_syntax_is_named(text: str, message: str) -> None:
    with pytest.raises(InsightsSyntaxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_group_values_from_labels() -> None:
    assert group_values("anthropic.claude-3-haiku-20240307-v1:0", ("ModelId",)) == (
        "anthropic.claude-3-haiku-20240307-v1:0",
    )
    assert group_values("a b", ("ModelId",)) == ("a b",)  # one key: the whole label
    assert group_values("m us-east-1a", ("ModelId", "Zone")) == ("m", "us-east-1a")
    assert group_values("Other x", ("ModelId", "Zone")) == ("Other", "x")
    assert group_values("a b c", ("ModelId", "Zone")) is None  # ambiguous: a value holds a space
    assert group_values("a  b", ("ModelId", "Zone")) is None  # an empty part: no dimension value is empty
    assert group_values("a ", ("ModelId", "Zone")) is None
    assert group_values("a", ("ModelId", "Zone")) is None  # too few parts
    assert group_values("", ("ModelId",)) is None
    assert group_values("q0", ()) == ()


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize(
    "values", [("a", "b c", "d", "e f", "g"), ("x y", "z", "w", "v", "u"), ("a", "b", "c d", "", "e")]
)
def test_group_values_never_attributes_a_value_to_the_wrong_key(size: int, values: tuple[str, ...]) -> None:
    keys = tuple(f"k{i}" for i in range(size))
    got = group_values(" ".join(values[:size]), keys)
    assert got is None or got == values[:size]


def _insights(n: int, period: int = 60) -> list[ResolvedInsights]:
    return [
        ResolvedInsights(f"n{i}", f'SELECT AVG(M{i}) FROM "ns"', (), period, 300, 60, MissingData.NAN) for i in range(n)
    ]


METRIC = ResolvedMetric("M", ("Average",), 60, 300, 60, MissingData.NAN)


def _series(n: int) -> list[SeriesKey]:
    return [SeriesKey.of("ns", "M", {"ModelId": f"m{i:04d}"}) for i in range(n)]


@pytest.mark.parametrize(
    ("stat_queries", "insights", "max_per_call", "calls"),
    [
        (0, 1, 500, 1),
        (0, 3, 500, 3),  # one Insights query per call
        (499, 1, 500, 1),
        (500, 1, 500, 2),  # 501 queries
        (500, 0, 500, 1),
        (10, 4, 500, 4),
        (1200, 2, 500, 3),
        (1000, 1, 500, 3),
        (5, 2, 3, 3),
        (0, 2, 1, 2),
        (3, 1, 1, 4),
    ],
)
def test_plan_respects_insights_limit_in_fewest_calls(
    stat_queries: int, insights: int, max_per_call: int, calls: int
) -> None:
    batches = plan(_series(stat_queries), [METRIC], 10_000.0, max_per_call, _insights(insights))
    assert len(batches) == calls
    assert all(len(b.expressions) <= 1 for b in batches)
    assert all(1 <= b.size <= min(max_per_call, MAX_QUERIES_PER_CALL) for b in batches)
    assert sorted(e.name for b in batches for e in b.expressions) == sorted(f"n{i}" for i in range(insights))
    assert sum(len(b.queries) for b in batches) == stat_queries
    for batch in batches:
        ids = [q.id for q in batch.queries] + [e.id for e in batch.expressions]
        assert len(set(ids)) == len(ids)


def test_insights_with_another_period_get_their_own_window() -> None:
    batches = plan(_series(2), [METRIC], 10_030.0, 500, _insights(1, period=300))
    assert [(len(b.queries), len(b.expressions)) for b in batches] in ([(2, 0), (0, 1)], [(0, 1), (2, 0)])
    expression = next(e for b in batches for e in b.expressions)
    assert expression.to_api() == {
        "Id": "i0",
        "Expression": 'SELECT AVG(M0) FROM "ns"',
        "Period": 300,
        "ReturnData": True,
    }


BASE = "targets:\n  - regions: [us-east-1]\nnamespaces:\n  - namespace: AWS/Bedrock/Batch\n    insights:\n"


def _problems(item: str) -> list[str]:
    """What `check-config` refuses the item for: the config's validation, then the checks every load makes."""
    try:
        config = load_config_text(BASE + "      - " + item + "\n", env={})
    except ConfigError as exc:
        return list(exc.problems)
    return config_problems(config)


def test_config_errors_name_the_field() -> None:
    assert _problems("{name: a, query: \"SELECT AVG(M) FROM x WHERE a <> 'b'\"}") == [
        "namespaces[0].insights[0].query: unsupported operator at position 30: WHERE supports only key = 'value' "
        "and key != 'value'"
    ]
    assert _problems("{name: 9a, query: 'SELECT AVG(M) FROM x'}")[0].startswith("namespaces[0].insights[0].name: ")
    reserved = _problems("{name: bedrock_batch_exporter_x, query: 'SELECT AVG(M) FROM \"AWS/Bedrock/Batch\"'}")
    assert reserved[0].startswith("namespaces[0].insights[0].name: ") and "reserved" in reserved[0]
    assert _problems("{name: a, query: 'SELECT AVG(M) FROM x'}") == [
        "namespaces[0].insights[0].query: reads namespace 'x'; list it under that namespace instead"
    ]
    assert (
        "multiple of 60s" in _problems("{name: a, period: 30s, query: 'SELECT AVG(M) FROM \"AWS/Bedrock/Batch\"'}")[0]
    )
    taken = "aws_bedrock_batch_number_of_records_pending_processing_maximum"
    assert "already the name" in _problems(f"{{name: {taken}, query: 'SELECT AVG(M) FROM \"AWS/Bedrock/Batch\"'}}")[0]


def test_config_resolves_window_and_allows_insights_alone() -> None:
    config = load_config_text(
        "targets:\n  - regions: [us-east-1]\nnamespaces:\n  - namespace: App\n    period: 10s\n    length: 30s\n"
        "    insights:\n      - {name: app_m, query: 'SELECT SUM(M) FROM App GROUP BY Host'}\n",
        env={},
    )
    (ns,) = config.namespaces
    assert ns.resolved_metrics() == ()  # no ListMetrics, no statistic queries
    (item,) = ns.resolved_insights()
    assert (item.period, item.length, item.delay, item.group_by) == (60, 60, 60, ("Host",))
    assert item.expression == 'SELECT SUM("M") FROM "App" GROUP BY "Host"'
    assert item.missing_data is MissingData.NAN
    with pytest.raises(ConfigError, match="3 hours"):
        load_config_text(
            BASE.replace("    insights:", "    length: 3h\n    insights:")
            + "      - {name: a, query: 'SELECT AVG(M) FROM \"AWS/Bedrock/Batch\"'}\n",
            env={},
        )


@dataclass
class _Dim:
    name: str
    value: str


@dataclass
class _Datum:
    name: str
    value: float
    when: float
    dims: dict[str, str] = field(default_factory=dict)
    namespace: str = "ns"

    @property
    def dimensions(self) -> list[_Dim]:
        return [_Dim(k, v) for k, v in self.dims.items()]

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.when, UTC).replace(tzinfo=None)  # moto keeps naive UTC


DATA = [
    _Datum("M", 1.0, 10, {"Model": "a"}),
    _Datum("M", 3.0, 20, {"Model": "a"}),
    _Datum("M", 5.0, 70, {"Model": "a"}),
    _Datum("M", 10.0, 15, {"Model": "b"}),
    _Datum("M", 7.0, 30, {"Model": "b", "Zone": "z"}),
    _Datum("M", 100.0, 30, {}),
    _Datum("Other", 9.0, 30, {"Model": "a"}),
    _Datum("M", 9.0, 30, {"Model": "a"}, namespace="other"),
    _Datum("M", 9.0, 200, {"Model": "a"}),  # outside [0, 120)
]


def _eval(text: str) -> dict[str, list[tuple[float, float]]]:
    results = evaluate(read(text), DATA, 0, 120, 60, "i0")
    assert all(r["Id"] == "i0" for r in results)
    return {r["Label"]: list(zip(r["Timestamps"], r["Values"], strict=True)) for r in results}


def test_evaluator_groups_schema_where_order_and_limit() -> None:
    assert _eval('SELECT AVG(M) FROM SCHEMA("ns", Model) GROUP BY Model') == {
        "a": [(60.0, 5.0), (0.0, 2.0)],
        "b": [(0.0, 10.0)],
    }
    assert _eval('SELECT SUM(M) FROM "ns" GROUP BY Model') == {
        "a": [(60.0, 5.0), (0.0, 4.0)],
        "b": [(0.0, 17.0)],
        "Other": [(0.0, 100.0)],
    }
    assert _eval('SELECT COUNT(M) FROM "ns" GROUP BY Model, "Zone"') == {
        "a Other": [(60.0, 1.0), (0.0, 2.0)],
        "b Other": [(0.0, 1.0)],
        "b z": [(0.0, 1.0)],
        "Other Other": [(0.0, 1.0)],
    }
    assert _eval("SELECT MAX(M) FROM \"ns\" WHERE Model = 'b'") == {"i0": [(0.0, 10.0)]}
    assert _eval('SELECT MIN(M) FROM SCHEMA("ns")') == {"i0": [(0.0, 100.0)]}
    assert list(_eval('SELECT AVG(M) FROM "ns" GROUP BY Model ORDER BY MAX() DESC LIMIT 2')) == ["Other", "b"]
    assert list(_eval('SELECT AVG(M) FROM "ns" GROUP BY Model ORDER BY SUM() ASC')) == ["a", "b", "Other"]
    assert _eval("SELECT AVG(M) FROM \"ns\" WHERE Model = 'none' GROUP BY Model") == {"i0": []}
    assert _eval("SELECT SUM(M) FROM SCHEMA(\"ns\", Model) WHERE Model != 'a' GROUP BY Model") == {"b": [(0.0, 10.0)]}
    assert _eval('SELECT MAX("M") FROM "ns" WHERE "Model" != \'a\' AND "Zone" = \'z\'') == {"i0": [(0.0, 7.0)]}


def test_batches_default_to_no_expressions() -> None:
    assert Batch(0, 60, ()).expressions == ()


def _meaning(query: InsightsQuery) -> Statement:
    """The exporter's parse, in the evaluator's terms: the two are written separately and must agree."""
    return Statement(
        query.function,
        query.metric,
        query.namespace,
        None if query.schema is None else frozenset(query.schema),
        tuple((k, op == "=", v) for k, op, v in query.where),
        query.group_by,
        None if query.order_by is None else (query.order_by[0], query.order_by[1] == "DESC"),
        query.limit or 500,
    )


def test_reserved_keywords_are_aws_list() -> None:
    assert len(RESERVED_KEYWORDS) == 917
    assert {"COUNT", "SUM", "AVG", "OPERATION", "TYPE", "STATE", "VALUE", "LIMIT", "SCHEMA"} <= RESERVED_KEYWORDS
    assert is_reserved("count") and is_reserved("Operation")
    assert not is_reserved("ModelId") and not is_reserved("Other")


def test_what_is_sent_double_quotes_every_name() -> None:
    assert parse(RESERVED_QUERY).expression() == RESERVED_QUERY
    assert parse('select sum(Count) from "Custom/App" group by Operation').expression() == RESERVED_QUERY
    sent = parse("SELECT MAX(M) FROM ns WHERE Type != 'it\\'s \"q\"' ORDER BY max() desc LIMIT 3").expression()
    assert sent == 'SELECT MAX("M") FROM "ns" WHERE "Type" != \'it\\\'s \\"q\\"\' ORDER BY MAX() DESC LIMIT 3'


@pytest.mark.parametrize(
    "text",
    [
        EXAMPLE,
        RESERVED_QUERY,
        "SELECT COUNT(M) FROM ns WHERE a = 'x' AND b != 'it\\'s' GROUP BY a, b ORDER BY MAX() DESC LIMIT 10",
        'SELECT AVG("Bytes\\"Input\\"") FROM SCHEMA("A/B", "k\'1", Type) WHERE Type = \'say "hi"\' ORDER BY MIN()',
    ],
)
def test_the_simulated_aws_reads_what_is_sent_with_the_same_meaning(text: str) -> None:
    query = parse(text)
    assert read(query.expression()) == _meaning(query)


def test_every_reserved_keyword_is_sent_in_a_form_aws_reads() -> None:
    for word in sorted(RESERVED_KEYWORDS):
        for spelling in (word, word.lower()):
            query = parse(
                f'SELECT AVG("{spelling}") FROM "{spelling}" WHERE "{spelling}" != \'v\' GROUP BY "{spelling}"'
            )
            assert read(query.expression()) == _meaning(query), spelling


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('SELECT SUM(Count) FROM "Custom/App" GROUP BY "Operation"', "Reserved keyword 'Count'"),
        ('SELECT SUM("Count") FROM "Custom/App" GROUP BY Operation', "Reserved keyword 'Operation'"),
        ('SELECT SUM("Count") FROM "Custom/App" WHERE type = \'x\'', "Reserved keyword 'type'"),
        ('SELECT SUM("Count") FROM SCHEMA("Custom/App", State)', "Reserved keyword 'State'"),
        ("SELECT AVG(M) FROM Custom/App", "Invalid syntax"),
        ('SELECT AVG(M) FROM "ns" WHERE k = "v"', "single quotes"),
        ("SELECT AVG(M) FROM \"ns\" WHERE k < 'v'", "Invalid syntax"),
        ('SELECT P99(M) FROM "ns"', "expected AVG"),
        ('SELECT AVG(M) FROM "ns" LIMIT 501', "LIMIT"),
        ('SELECT AVG(M) FROM "ns" LIMIT "5"', "LIMIT"),
        ('SELECT AVG(M) FROM "ns" GROUP BY k LIMIT 2 ORDER BY MAX()', "unexpected 'ORDER'"),
        ('SELECT AVG("M) FROM "ns"', "Invalid syntax"),
        ("", "1 to 2048"),
        ('SELECT AVG(M) FROM "ns" WHERE k = \'' + "v" * 2048 + "'", "1 to 2048"),
    ],
)
def test_the_simulated_aws_refuses_what_aws_documents_as_invalid(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        read(text)


def _long_query(keys: int) -> str:
    return 'SELECT AVG(M) FROM "AWS/Bedrock/Batch" GROUP BY ' + ", ".join(f"Key{i:04d}" for i in range(keys))


def test_the_sent_text_is_what_is_length_checked() -> None:
    keys = 215  # 9 characters a key as written, 11 once quoted
    assert len(_long_query(keys)) <= MAX_EXPRESSION_LENGTH < len(_long_query(keys).replace("Key", '"Key'))
    with pytest.raises(InsightsSyntaxError, match=r"as sent to CloudWatch .* is \d+ characters"):
        parse(_long_query(keys))
    assert len(parse(_long_query(150)).expression()) <= MAX_EXPRESSION_LENGTH
    with pytest.raises(InsightsSyntaxError, match="characters"):
        parse("SELECT AVG(M) FROM ns " + " " * 100_000)
    (problem,) = _problems(f"{{name: a, query: '{_long_query(keys)}'}}")
    assert problem.startswith("namespaces[0].insights[0].query: the query as sent to CloudWatch")
