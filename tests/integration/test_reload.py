"""Reloads without ghosts: each sink shows exactly the new configuration, late results of the old one are refused,
and a storm of reloads costs one at a time and leaves nothing behind."""

from __future__ import annotations

import gc
import json
import threading
import urllib.request
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.config import load_config_text
from exporter.demo.server import SimulatedAws
from exporter.model import TaskState
from exporter.snapshot import Store
from tests.conftest import put_values, start_exporter, wait_for
from tests.integration.otlp_receiver import OtlpReceiver
from tests.integration.test_jobs import recent

PENDING = "NumberOfRecordsPendingProcessing"


def config(aws: SimulatedAws, old: bool, otlp: str = "") -> str:
    """`old`: target `first` in us-east-1 polling AWS/Bedrock/Batch; new: target `second` in us-west-2 polling
    AWS/Bedrock/Batch and Custom/App."""
    head = f"mode: both\notlp:\n  endpoint: {otlp}\n  interval: 1s\n  timeout: 2s\n" if otlp else ""
    target = "first" if old else "second"
    region = "us-east-1" if old else "us-west-2"
    custom = (
        ""
        if old
        else """  - namespace: Custom/App
    interval: 1s
    period: 10s
    length: 2m
    delay: 0s
    metrics: [{name: Latency, statistics: [Maximum]}]
"""
    )
    return f"""{head}
aws: {{max_attempts: 1, read_timeout: 2s, connect_timeout: 1s}}
jobs: {{enabled: false}}
targets:
  - name: {target}
    endpoint_url: {aws.url}
    regions: [{region}]
    account_id: "000000000000"
namespaces:
  - namespace: AWS/Bedrock/Batch
    interval: 1s
    period: 10s
    length: 2m
    delay: 0s
    metrics: [{{name: {PENDING}, statistics: [Maximum]}}]
{custom}"""


def metrics(url: str) -> dict[str, set[str]]:
    """Family name -> the regions its series carry."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).add(sample.labels.get("region", ""))
    return out


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver().start()
    yield server
    server.stop()


def test_a_reload_leaves_every_sink_showing_exactly_the_new_set(
    fresh_aws: SimulatedAws, receiver: OtlpReceiver, exporters: list[Exporter]
) -> None:
    put_values(fresh_aws, {(PENDING, "east-model"): 1.0}, when=recent())
    put_values(fresh_aws, {(PENDING, "west-model"): 2.0}, region="us-west-2", when=recent())
    put_values(fresh_aws, {("Latency", "west-model"): 3.0}, region="us-west-2", namespace="Custom/App", when=recent())
    exporter, url = start_exporter(exporters, config(fresh_aws, old=True, otlp=receiver.url))
    bedrock = "aws_bedrock_batch_number_of_records_pending_processing_maximum"
    wait_for(lambda: metrics(url).get(bedrock) == {"us-east-1"}, timeout=15)

    exporter.reload(load_config_text(config(fresh_aws, old=False, otlp=receiver.url), env={}))
    custom = "aws_custom_app_latency_maximum"
    wait_for(lambda: metrics(url).get(custom) == {"us-west-2"} and metrics(url).get(bedrock) == {"us-west-2"})
    assert [name for name, regions in metrics(url).items() if "us-east-1" in regions] == []

    with urllib.request.urlopen(url + "/api/status", timeout=5) as response:
        regions = json.loads(response.read())["regions"]["items"]
    assert [(r["target"], r["region"]) for r in regions] == [("second", "us-west-2")]
    assert sorted(t["namespace"] for t in regions[0]["tasks"]) == ["AWS/Bedrock/Batch", "Custom/App"]

    def pushed_new_set() -> bool:
        points = receiver.latest()
        names = {p.name for p in points}
        regions = {p.attributes.get("cloud.region") for p in points if p.name.startswith("aws.")}
        return "aws.custom.app.latency.maximum" in names and regions == {"us-west-2"}

    wait_for(pushed_new_set, timeout=15)
    names = {p.name for p in receiver.latest()}
    assert not any(name.startswith("aws_") for name in names)  # OpenTelemetry names, not Prometheus ones


def test_a_result_in_flight_when_a_reload_drops_its_task_is_refused(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    """Force the interleaving: the old task's cycle has passed its stop check and is about to publish when the
    reload happens; the Store must refuse the superseded generation."""
    put_values(fresh_aws, {(PENDING, "east-model"): 1.0}, when=recent())
    exporter, _ = start_exporter(exporters, config(fresh_aws, old=True))
    store = exporter.store
    real_publish = Store.publish
    dropped = next(t.key for t in exporter.poller.tasks)
    reloaded = threading.Event()
    refused: list[bool] = []

    def publish(self: Store, state: TaskState, generation: int | None = None) -> bool:
        if state.key == dropped and not reloaded.is_set():
            reloaded.set()
            exporter.reload(load_config_text(config(fresh_aws, old=False), env={}))  # in the old cycle's thread
            outcome = real_publish(self, state, generation)
            refused.append(not outcome)
            return outcome
        return real_publish(self, state, generation)

    store.publish = publish.__get__(store)  # type: ignore[method-assign]
    wait_for(reloaded.is_set, timeout=15)
    wait_for(lambda: refused, timeout=5)
    assert refused == [True]
    assert dropped not in store.snapshot.tasks
    wait_for(lambda: any(k.region == "us-west-2" for k in store.snapshot.tasks), timeout=15)
    assert dropped not in store.snapshot.tasks


def test_a_reload_storm_runs_one_at_a_time_and_leaves_nothing_behind(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server: {enable_reload: true}\n" + config(fresh_aws, old=True))
    exporter = Exporter(load_config_text(path.read_text(), env={}), config_path=str(path))
    url = exporter.start("127.0.0.1:0")
    try:
        wait_for(lambda: exporter.store.snapshot.ready, timeout=15)
        tasks = len(exporter.poller.tasks)
        old = [weakref.ref(exporter.poller), weakref.ref(exporter.clients)]

        def reload() -> int:
            request = urllib.request.Request(url + "/-/reload", method="POST", data=b"")
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: reload(), range(100)))
        assert answers == [200] * 100
        # concurrent requests shared reloads: far fewer generations than requests
        assert exporter.store.generation < 100
        wait_for(exporter.store.snapshot.tasks.__len__, timeout=15)
        # One generation's threads at most: the poller's loop, its task pool and its AWS call pool (threads of
        # other tests, and the HTTP server's fixed workers, do not count).
        bound = 1 + min(tasks, 16) + exporter.config.aws.max_concurrent_requests

        def polling_threads() -> list[str]:
            return [t.name for t in threading.enumerate() if t.name.startswith(("poller", "poll-task", "aws-call"))]

        def settled() -> bool:
            gc.collect()
            return all(ref() is None for ref in old) and len(polling_threads()) <= bound

        try:
            wait_for(settled, timeout=30, what="the old generation released and polling threads within one generation")
        except AssertionError as exc:
            alive = [ref() is not None for ref in old]
            raise AssertionError(f"{exc}; old poller/clients alive: {alive}; threads: {polling_threads()}") from None
    finally:
        exporter.stop()
