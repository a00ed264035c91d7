"""Every AWS client the exporter makes reads its answers through the size cap (aws.max_answer_bytes).

The cap sits in botocore's endpoint (`exporter/aws/answers.py`): if a botocore release moves it, this test fails
instead of the cap switching itself off. The cap's behaviour against real answers is in
tests/integration/test_faults.py::test_an_answer_over_the_size_cap_is_not_read_and_counts_as_bad.
"""

from __future__ import annotations

import pytest

from exporter.aws.answers import _CappedSession
from exporter.aws.session import SERVICES, AwsClients
from exporter.config import AwsConfig, TargetConfig


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_client_is_capped(service: str) -> None:
    target = TargetConfig(endpoint_url="http://127.0.0.1:9", regions=["us-east-1"])
    client = AwsClients(AwsConfig(max_answer_bytes=65536), static_credentials=("k", "s")).client(
        service, target, "us-east-1"
    )
    session = client._endpoint.http_session
    assert isinstance(session, _CappedSession) and session._limit == 65536
