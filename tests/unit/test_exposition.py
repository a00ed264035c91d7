from __future__ import annotations

import gzip
import math
import zlib

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from exporter.sinks.prometheus import Exposition, gzip_concat, render
from exporter.snapshot import Sample, Store, TaskKey, TaskState

KEY = TaskKey("t", "us-east-1", "AWS/Bedrock/Batch")


def state(*values: float, key: TaskKey = KEY, stamp: float | None = None) -> TaskState:
    samples = tuple(
        Sample("aws_x_average", "doc", (("account_id", "1"), ("dimension_ModelId", f'm"{i}\\\n')), v, stamp)
        for i, v in enumerate(values)
    )
    return TaskState(key=key, account_id="1", samples=samples, up=True, last_success=1.0)


def test_rendering_escapes_labels_and_keeps_values() -> None:
    store = Store(lambda: 0.0)
    snapshot = store.publish(state(1.5, math.nan, 0.0))
    text = render(snapshot).body.decode()
    (family,) = text_string_to_metric_families(text)
    assert family.type == "gauge"
    values = {s.labels["dimension_ModelId"]: s.value for s in family.samples}
    assert values['m"0\\\n'] == 1.5 and math.isnan(values['m"1\\\n']) and values['m"2\\\n'] == 0.0


def test_timestamps_only_when_asked() -> None:
    store = Store(lambda: 0.0)
    assert " 1700000000000" in render(store.publish(state(1.0, stamp=1_700_000_000.0))).body.decode()
    assert "1700000000" not in render(store.publish(state(1.0))).body.decode()


def test_gzip_concatenation_is_one_valid_member() -> None:
    store = Store(lambda: 0.0)
    rendered = render(store.publish(state(*range(2000))))
    tail = b"# HELP tail x\n# TYPE tail gauge\ntail 1.0\n"
    packed = gzip_concat(rendered, tail)
    assert gzip.decompress(packed) == rendered.body + tail
    # a single member: zlib's gzip decoder (what curl and most clients use) reads it all in one go
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decoder.decompress(packed) == rendered.body + tail and decoder.eof and not decoder.unused_data
    assert len(packed) < len(rendered.body) / 5


def test_exposition_follows_the_newest_snapshot_and_adds_self_metrics_at_scrape() -> None:
    store = Store(lambda: 0.0)
    registry = CollectorRegistry()
    scrapes = Counter("scrapes", "test counter", registry=registry)
    exposition = Exposition(store, registry)
    store.publish(state(1.0))
    store.publish(state(2.0, 3.0))
    scrapes.inc()
    body = exposition.body().decode()
    assert "aws_x_average" in body and body.count("aws_x_average{") == 2
    assert "scrapes_total 1.0" in body
    assert gzip.decompress(exposition.body(gzip=True)).decode().count("aws_x_average{") == 2


def test_a_failed_cycle_keeps_the_last_good_samples() -> None:
    good = state(4.0)
    failed = good.failed("boom", now=5.0)
    assert failed.samples == good.samples and not failed.up and failed.consecutive_failures == 1
    assert failed.last_success == good.last_success and failed.last_error == "boom"


def test_fast_formatter_matches_prometheus_client() -> None:
    from prometheus_client import generate_latest

    from exporter.sinks.prometheus import SnapshotCollector, format_text

    samples = (
        Sample("g", "doc with \\ and\nnewline", (("a", 'x"y\\z\nw'), ("b", "")), math.inf, 1_700_000_000.5),
        Sample("g", "doc", (("a", "2"),), -math.inf),
        Sample("g", "doc", (("a", "3"),), math.nan),
        Sample("c", "a counter", (("k", "v"),), 3.0, kind="counter"),
        Sample("plain", "no labels", (), 1e-9),
    )
    store = Store(lambda: 0.0)
    snapshot = store.publish(TaskState(key=KEY, account_id="1", samples=samples, up=True))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    ours = format_text(SnapshotCollector(snapshot).collect()).decode()
    theirs = generate_latest(registry).decode()

    def parsed(text: str) -> list[tuple[object, ...]]:
        return [
            (f.name, f.type, f.documentation, s.name, tuple(sorted(s.labels.items())), repr(s.value), s.timestamp)
            for f in text_string_to_metric_families(text)
            for s in f.samples
        ]

    assert parsed(ours) == parsed(theirs)
    assert ours == theirs  # byte for byte, in fact
