"""`aws.max_attempts` counts every attempt, first included (issue 15), counted where the requests arrive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from exporter.aws.session import AwsClients
from exporter.config import AwsConfig, TargetConfig
from exporter.demo.server import SimulatedAws
from tests.integration.fault_proxy import Fault, FaultProxy

QUERY = {
    "Id": "q0",
    "MetricStat": {
        "Metric": {"Namespace": "AWS/Bedrock/Batch", "MetricName": "NumberOfRecordsPendingProcessing"},
        "Period": 60,
        "Stat": "Maximum",
    },
}


@pytest.fixture
def proxy(fresh_aws: SimulatedAws) -> Iterator[FaultProxy]:
    server = FaultProxy(fresh_aws.url).start()
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["standard", "legacy", "adaptive"])
@pytest.mark.parametrize("attempts", [1, 3])
def test_always_503_makes_exactly_max_attempts_requests(proxy: FaultProxy, mode: str, attempts: int) -> None:
    proxy.set(Fault("http503", operation="GetMetricData"))
    clients = AwsClients(AwsConfig(retry_mode=mode, max_attempts=attempts, connect_timeout=1, read_timeout=2))
    target = TargetConfig(regions=("us-east-1",), endpoint_url=proxy.url, account_id="000000000000")
    client = clients.client("cloudwatch", target, "us-east-1")
    now = datetime.now(UTC)
    with pytest.raises(ClientError) as caught:
        client.get_metric_data(MetricDataQueries=[QUERY], StartTime=now - timedelta(minutes=5), EndTime=now)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert proxy.count("GetMetricData") == attempts
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == attempts - 1
