"""SampledCollector: process metrics read by a sampler thread, not by the scrape; live when no sampler runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.selfmetrics import SampledCollector, SelfMetrics
from exporter.snapshot import Store


class Reads(Collector):
    """A collector that counts how often it is read and reports that count."""

    def __init__(self) -> None:
        self.reads = 0
        self.fail = False

    def collect(self) -> Iterator[Metric]:
        if self.fail:
            raise OSError("/proc went away")
        self.reads += 1
        yield GaugeMetricFamily("reads", "times read", value=self.reads)


def _value(collector: Collector) -> float:
    (family,) = list(collector.collect())
    return float(family.samples[0].value)


def test_without_a_reading_collect_reads_live() -> None:
    inner = Reads()
    sampled = SampledCollector(inner, 60.0)
    assert [_value(sampled), _value(sampled)] == [1, 2]


def test_after_a_reading_collect_serves_it_without_reading() -> None:
    inner = Reads()
    sampled = SampledCollector(inner, 60.0)
    sampled.sample()
    assert [_value(sampled), _value(sampled)] == [1, 1]
    assert inner.reads == 1
    sampled.sample()
    assert _value(sampled) == 2


def test_a_stale_reading_is_not_served() -> None:
    inner = Reads()
    sampled = SampledCollector(inner, 0.01)  # three periods: 30 ms
    sampled.sample()
    time.sleep(0.05)
    assert _value(sampled) == 2  # read live: the sampler stalled or stopped


def test_a_failed_reading_keeps_the_last_good_one() -> None:
    inner = Reads()
    sampled = SampledCollector(inner, 60.0)
    sampled.sample()
    inner.fail = True
    sampled.sample()  # logged at debug level, never raised
    assert _value(sampled) == 1


def test_self_metrics_sample_process_metrics_in_a_thread_that_stops() -> None:
    metrics = SelfMetrics(Store(time.time))
    before = {t.name for t in threading.enumerate()}
    metrics.start_sampling()
    metrics.start_sampling()  # once
    assert [t.name for t in threading.enumerate()].count("sample-process") == 1
    deadline = time.monotonic() + 10
    while metrics.process._read is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert metrics.process._read is not None
    served = {s.name for f in metrics.registry.collect() for s in f.samples}
    assert "process_resident_memory_bytes" in served
    metrics.stop_sampling()
    assert {t.name for t in threading.enumerate()} == before
