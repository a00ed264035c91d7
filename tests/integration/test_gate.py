"""The call gate on real botocore clients against the simulated AWS: where a GetMetricData call holds its slot.

The slot is observed from handlers registered on the client's own events after the gate's (botocore runs a client's
handlers in registration order, register_first ones first), so each observation sees what the call does at that point.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from exporter.aws import gate
from exporter.aws.cloudwatch import run_batch
from exporter.aws.gate import CallGate
from exporter.aws.session import AwsClients
from exporter.config import AwsConfig, TargetConfig
from exporter.demo.server import SimulatedAws
from exporter.model import MissingData, SeriesKey
from exporter.planner import Batch, Query
from tests.integration.fault_proxy import Fault, FaultProxy

EVENTS = ("before-sign", "before-send", "before-parse", "needs-retry")


def _free(g: CallGate) -> bool:
    if g._slots.acquire(blocking=False):
        g._slots.release()
        return True
    return False


def _observed(client: Any, g: CallGate) -> list[tuple[str, bool]]:
    """(event, slot free?) for every gate event of every call the client makes from now on."""
    seen: list[tuple[str, bool]] = []
    for event in EVENTS:
        observe = lambda e=event, **_: seen.append((e, _free(g)))  # noqa: E731
        client.meta.events.register(f"{event}.cloudwatch.GetMetricData", observe)
    return seen


def _batch() -> Batch:
    end = int(time.time()) // 60 * 60
    series = SeriesKey.of("AWS/Bedrock/Batch", "NumberOfRecordsPendingProcessing", {"ModelId": "m"})
    return Batch(end - 300, end, (Query("q0", series, "Maximum", 60, MissingData.NAN),))


@pytest.fixture
def proxy(fresh_aws: SimulatedAws) -> Iterator[FaultProxy]:
    server = FaultProxy(fresh_aws.url).start()
    yield server
    server.stop()


def _client(url: str, **aws: Any) -> Any:
    target = TargetConfig(regions=("us-east-1",), endpoint_url=url, account_id="000000000000")
    client = AwsClients(AwsConfig(**aws)).client("cloudwatch", target, "us-east-1")
    gate.hook(client)  # run_batch hooks too (once); hooked first so the observers below come after the gate's own
    return client


def test_a_call_holds_its_slot_only_while_it_runs_python(fresh_aws: SimulatedAws) -> None:
    client = _client(fresh_aws.url)
    g = CallGate(1)
    seen = _observed(client, g)
    with g.working():
        assert not _free(g)  # building the request: inside
        answers = run_batch(client, _batch())
        assert not _free(g)  # merging the answer: inside again
    assert _free(g)
    assert set(answers) == {"q0"}
    # Signing (credentials may be refreshed over the network) and the HTTP exchange are outside the gate; decoding
    # the answer is inside; the needs-retry step (back-off sleeps follow it) is outside.
    assert seen == [("before-sign", True), ("before-send", True), ("before-parse", False), ("needs-retry", True)]


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_retries_wait_outside_the_gate_and_a_failed_call_gives_the_slot_back(proxy: FaultProxy, mode: str) -> None:
    proxy.set(Fault("http503", operation="GetMetricData"))
    client = _client(proxy.url, retry_mode=mode, max_attempts=3, connect_timeout=1, read_timeout=2)
    g = CallGate(1)
    seen = _observed(client, g)
    with pytest.raises(ClientError), g.working():
        run_batch(client, _batch())
    assert _free(g)
    assert proxy.count("GetMetricData") == 3
    assert [e for e, _ in seen] == list(EVENTS) * 3
    assert all(free == (event != "before-parse") for event, free in seen)


def test_a_client_used_outside_a_gate_is_not_held_up(fresh_aws: SimulatedAws) -> None:
    client = _client(fresh_aws.url)
    g = CallGate(1)
    with g.working():  # another thread's work holds the only slot; this call is under no gate
        pass
    answers = run_batch(client, _batch())  # e.g. `doctor`: the hooks find no gate for this thread
    assert set(answers) == {"q0"}
