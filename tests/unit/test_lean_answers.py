"""The lean GetMetricData path says what botocore's own serializer and parser say (exporter.aws.cloudwatch).

Pure: the botocore client is built but never sends anything; bodies are shaped after GetMetricDataOutput in botocore's
cloudwatch service model (MetricDataResults[].Id/Label/Timestamps/Values/StatusCode/Messages, NextToken, Messages).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from exporter.aws.cloudwatch import _LeanParser, _LeanSerializer, lean_get_metric_data
from exporter.errors import BadAnswerError
from exporter.results import merge_page


@pytest.fixture(scope="module")
def client() -> Any:
    config = BotoConfig(parameter_validation=False)  # as exporter.aws.session builds them
    return boto3.client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s", config=config
    )


def _response(body: Any, status: int = 200) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {"status_code": status, "headers": {"x-amzn-requestid": "r-1"}, "body": raw}


def _epoch(value: Any) -> Any:
    return value.timestamp() if isinstance(value, datetime) else value


def _comparable(parsed: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(parsed, default=str))
    for result, original in zip(out.get("MetricDataResults", []), parsed.get("MetricDataResults", []), strict=True):
        result["Timestamps"] = [_epoch(t) for t in original.get("Timestamps", [])]
    return out


ANSWERS = [
    {
        "MetricDataResults": [
            {
                "Id": "q0",
                "Label": "a",
                "Timestamps": [1700000060, 1700000000.5],
                "Values": [1.5, 2],
                "StatusCode": "PartialData",
                "Messages": [{"Code": "c", "Value": "v"}],
            },
            {"Id": "q1", "Label": "b", "Timestamps": [], "Values": [], "StatusCode": "Complete"},
        ],
        "NextToken": "t",
        "Messages": [{"Code": "Warn", "Value": "w"}],
    },
    {"MetricDataResults": []},
    {},
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_lean_parse_equals_botocore_parse(client: Any, answer: dict[str, Any]) -> None:
    shape = client.meta.service_model.operation_model("GetMetricData").output_shape
    inner = client._endpoint._response_parser_factory.create_parser(client.meta.service_model.resolved_protocol)
    ours = _LeanParser(inner).parse(_response(answer), shape)
    theirs = inner.parse(_response(answer), shape)
    assert _comparable(ours) == _comparable(theirs)


@pytest.mark.parametrize(
    "body",
    [
        {"MetricDataResults": [{"Id": "q0", "Timestamps": ["2024-01-01T00:00:00Z"], "Values": [1.0]}]},
        b"not json",
    ],
)
def test_unusual_answers_go_to_botocore(client: Any, body: Any) -> None:
    shape = client.meta.service_model.operation_model("GetMetricData").output_shape
    inner = client._endpoint._response_parser_factory.create_parser(client.meta.service_model.resolved_protocol)
    try:
        theirs: Any = inner.parse(_response(body), shape)
    except Exception as exc:  # botocore refuses it (its ResponseParserError): so must the lean path, the same way
        with pytest.raises(type(exc)):
            _LeanParser(inner).parse(_response(body), shape)
        return
    assert repr(_LeanParser(inner).parse(_response(body), shape)) == repr(theirs)  # repr: nan != nan


@pytest.mark.parametrize(
    "body",
    [  # 200 answers of shapes GetMetricDataOutput does not have: botocore's parser raises from inside itself
        [1, 2],
        {"MetricDataResults": {"q0": {"Id": "q0"}}},
        {"MetricDataResults": [1]},
        {"MetricDataResults": [{"Id": "q0", "Timestamps": "x", "Values": [1.0]}]},
        {"MetricDataResults": [{"Id": "q0", "Timestamps": ["not a time"], "Values": [1.0]}]},
        {"Messages": 5},
        b"[" * 5000 + b"]" * 5000,  # deeper than orjson reads, and than json's recursion limit
        b'{"MetricDataResults": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
    ids=[
        "array",
        "results-object",
        "result-number",
        "timestamps-text",
        "timestamp-no-time",
        "messages",
        "deep",
        "deep-results",
    ],
)
def test_answers_botocore_breaks_on_are_bad_answers(client: Any, body: Any) -> None:
    """Counted as bad answers (exporter.errors.BadAnswerError, the `bad_answers` counter), not as `other`."""
    shape = client.meta.service_model.operation_model("GetMetricData").output_shape
    inner = client._endpoint._response_parser_factory.create_parser(client.meta.service_model.resolved_protocol)
    with pytest.raises(BadAnswerError) as caught:
        _LeanParser(inner).parse(_response(body), shape)
    assert caught.value.operation == "GetMetricData"


@pytest.mark.parametrize(
    "body",
    [  # Python's json accepts these, orjson (the lean decoder) refuses them: json decodes them, as before orjson
        b'{"MetricDataResults": [{"Id": "q0", "Timestamps": [1700000000], "Values": [NaN]}]}',
        b'{"MetricDataResults": [{"Id": "q0", "Timestamps": [1700000000], "Values": [-Infinity]}]}',
        b'{"MetricDataResults": [{"Id": "q0", "Timestamps": [1700000000], "Values": [1e999]}]}',
    ],
)
def test_what_orjson_refuses_json_reads_as_botocore_does(client: Any, body: bytes) -> None:
    shape = client.meta.service_model.operation_model("GetMetricData").output_shape
    inner = client._endpoint._response_parser_factory.create_parser(client.meta.service_model.resolved_protocol)

    def text(parsed: dict[str, Any]) -> str:  # NaN-safe: compared as JSON text, timestamps as floats
        out = _comparable(parsed)
        for result in out.get("MetricDataResults", []):
            result["Timestamps"] = [float(t) for t in result["Timestamps"]]
        return json.dumps(out, sort_keys=True)

    assert text(_LeanParser(inner).parse(_response(body), shape)) == text(inner.parse(_response(body), shape))


def test_an_infinite_timestamp_is_a_bad_answer(client: Any) -> None:
    """orjson refuses 1e999; json reads it as inf, and the results step refuses it (botocore's parser would raise a
    RuntimeError of its own, not counted as a bad answer)."""
    shape = client.meta.service_model.operation_model("GetMetricData").output_shape
    inner = client._endpoint._response_parser_factory.create_parser(client.meta.service_model.resolved_protocol)
    body = b'{"MetricDataResults": [{"Id": "q0", "Timestamps": [1e999], "Values": [1.0], "StatusCode": "Complete"}]}'
    parsed = _LeanParser(inner).parse(_response(body), shape)
    with pytest.raises(BadAnswerError, match="bad timestamp"):
        merge_page({}, parsed["MetricDataResults"], {"q0"}, set())


def test_integers_beyond_64_bits_read_as_json_reads_them(client: Any) -> None:
    """orjson gives a float for an integer beyond 64 bits where json gives an int: the same float once read."""
    shape = client.meta.service_model.operation_model("GetMetricData").output_shape
    inner = client._endpoint._response_parser_factory.create_parser(client.meta.service_model.resolved_protocol)
    for number in (2**64, 2**64 - 1, 2**70 + 1, -(2**63) - 1, 10**32):
        body = f'{{"MetricDataResults": [{{"Id": "q0", "Timestamps": [1700000000], "Values": [{number}]}}]}}'
        ours = _LeanParser(inner).parse(_response(body.encode()), shape)["MetricDataResults"][0]["Values"][0]
        theirs = inner.parse(_response(body.encode()), shape)["MetricDataResults"][0]["Values"][0]
        assert float(ours) == float(theirs) == float(number)


def test_lean_request_body_equals_botocore_body(client: Any) -> None:
    params = {
        "MetricDataQueries": [
            {
                "Id": "q0",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Bedrock/Batch",
                        "MetricName": "NumberOfRecordsPendingProcessing",
                        "Dimensions": [{"Name": "ModelId", "Value": "m\u00e9"}],
                    },
                    "Period": 60,
                    "Stat": "Average",
                },
                "ReturnData": True,
            }
        ],
        "StartTime": datetime(2024, 1, 1, tzinfo=UTC),
        "EndTime": datetime(2024, 1, 1, 0, 5, tzinfo=UTC),
        "ScanBy": "TimestampDescending",
        "NextToken": "t",
    }
    operation = client.meta.service_model.operation_model("GetMetricData")
    ours = _LeanSerializer(client._serializer).serialize_to_request(dict(params), operation)
    theirs = client._serializer.serialize_to_request(dict(params), operation)
    assert json.loads(ours.pop("body")) == json.loads(theirs.pop("body"))
    assert ours == theirs


def test_installed_once_on_a_botocore_client(client: Any) -> None:
    lean_get_metric_data(client)
    lean_get_metric_data(client)
    assert isinstance(client._serializer, _LeanSerializer)
    assert not isinstance(client._serializer._inner, _LeanSerializer)


def test_other_operations_and_clients_are_untouched(client: Any) -> None:
    class NotBotocore:
        pass

    plain = NotBotocore()
    lean_get_metric_data(plain)
    assert vars(plain) == {}
    operation = client.meta.service_model.operation_model("ListMetrics")
    params = {"Namespace": "AWS/Bedrock/Batch"}
    assert _LeanSerializer(client._serializer).serialize_to_request(
        params, operation
    ) == client._serializer.serialize_to_request(params, operation)
