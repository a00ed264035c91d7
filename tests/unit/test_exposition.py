from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.model import CloudWatchValue, JobsFinished, SeriesKey, TaskKey, TaskState
from exporter.sinks.prometheus import Exposition, gzip_parts, render
from exporter.snapshot import Snapshot, Store

KEY = TaskKey("t", "us-east-1", "X")


def state(*values: float, key: TaskKey = KEY, stamp: float | None = None) -> TaskState:
    records = tuple(
        CloudWatchValue(SeriesKey.of("X", "Metric", {"ModelId": f'm"{i}\\\n'}), "Average", v, stamp, 1.0)
        for i, v in enumerate(values)
    )
    return TaskState(
        key=key, account_id="1", values=records, up=True, last_success=1.0, cloudwatch_timestamps=stamp is not None
    )


def publish(store: Store, task: TaskState) -> Snapshot:
    store.publish(task)
    return store.snapshot


def test_rendering_escapes_labels_and_keeps_values() -> None:
    store = Store(lambda: 0.0)
    snapshot = publish(store, state(1.5, math.nan, 0.0))
    text = render(snapshot).body.decode()
    (family,) = text_string_to_metric_families(text)
    assert family.type == "gauge"
    values = {s.labels["dimension_ModelId"]: s.value for s in family.samples}
    assert values['m"0\\\n'] == 1.5 and math.isnan(values['m"1\\\n']) and values['m"2\\\n'] == 0.0


def test_timestamps_only_when_asked() -> None:
    store = Store(lambda: 0.0)
    assert " 1700000000000" in render(publish(store, state(1.0, stamp=1_700_000_000.0))).body.decode()
    assert "1700000000" not in render(publish(store, state(1.0))).body.decode()


@pytest.mark.parametrize("lines", [1, 1000])  # a tail under 5 KB, and one whose CRC is taken in 5 KB pieces
def test_gzip_concatenation_is_one_valid_member(lines: int) -> None:
    store = Store(lambda: 0.0)
    rendered = render(publish(store, state(*range(2000))))
    tail = b"# HELP tail x\n# TYPE tail gauge\n" + b"".join(b'tail{n="%d"} 1.0\n' % i for i in range(lines))
    parts = gzip_parts(rendered, tail)
    assert parts[1] is rendered.deflated  # sent as it is, never copied per scrape
    packed = b"".join(parts)
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
    assert "aws_x_metric_average" in body and body.count("aws_x_metric_average{") == 2
    assert "scrapes_total 1.0" in body
    assert gzip.decompress(exposition.body(gzip=True)).decode().count("aws_x_metric_average{") == 2


def test_a_failed_cycle_keeps_the_last_good_samples() -> None:
    good = state(4.0)
    failed = good.failed("boom", now=5.0)
    assert failed.values == good.values and not failed.up and failed.consecutive_failures == 1
    assert failed.last_success == good.last_success and failed.last_error == "boom"


def test_fast_formatter_matches_prometheus_client() -> None:

    from tests.exposition_oracle import SnapshotCollector, format_text

    def value(metric: str, label: str, number: float, stamp: float | None = None) -> CloudWatchValue:
        return CloudWatchValue(SeriesKey.of("N", metric, {"A": label, "B": ""}), "Sum", number, stamp, 0.0)

    records = (
        value("G", 'x"y\\z\nw', math.inf, 1_700_000_000.5),
        value("G", "2", -math.inf),
        value("G", "3", math.nan),
        value("Plain", "", 1e-9),
    )
    tracker = JobsFinished("m", "Failed", 3)
    snapshot = publish(
        Store(lambda: 0.0),
        TaskState(
            key=KEY, account_id="1", values=records, jobs_finished=(tracker,), up=True, cloudwatch_timestamps=True
        ),
    )
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
    assert len(ours) == len(theirs)  # the same lines; prometheus-client sorts label names, we keep ours in order


def test_series_that_collide_after_naming_are_exported_once_and_counted() -> None:
    same = (
        CloudWatchValue(SeriesKey.of("X", "Metric", {"Model-Id": "m"}), "Average", 1.0, None, 1.0),
        CloudWatchValue(SeriesKey.of("X", "Metric", {"Model_Id": "m"}), "Average", 2.0, None, 1.0),
    )
    dropped: list[int] = []
    snapshot = publish(Store(lambda: 0.0), TaskState(key=KEY, account_id="1", values=same, up=True))
    text = render(snapshot, dropped.append).body.decode()
    assert text.count("aws_x_metric_average{") == 1 and dropped == [1]
    assert 'dimension_Model_Id="m"} 1.0' in text  # the first in the Snapshot's order wins


def test_the_fast_renderer_writes_what_the_collector_path_writes() -> None:
    from exporter.model import InsightsValue, Job, JobUsage, Price
    from exporter.sinks.prometheus import Renderer
    from tests.exposition_oracle import SnapshotCollector, format_text

    values = (
        CloudWatchValue(SeriesKey.of("AWS/Bedrock/Batch", "M", {"ModelId": 'a"b\\c\nd'}), "Average", 1.5, 7.0, 1.0),
        CloudWatchValue(SeriesKey.of("AWS/Bedrock/Batch", "M", {"ModelId": "x"}), "Maximum", math.nan, None, 1.0),
        CloudWatchValue(SeriesKey.of("X", "Metric", {"Model-Id": "m"}), "Average", 1.0, None, 1.0),
        CloudWatchValue(SeriesKey.of("X", "Metric", {"Model_Id": "m"}), "Average", 2.0, None, 1.0),  # collides
        # a linked source account's series (monitoring-account mode): labelled with its owning account
        CloudWatchValue(
            SeriesKey.of("AWS/Bedrock/Batch", "M", {"ModelId": "x"}, "111111111111"), "Maximum", 4.0, None, 1.0
        ),
    )
    group = InsightsValue("pending_by_model", "SELECT ...", (("ModelId", "x"),), math.inf, None, 1.0, 1.0)
    job = Job("arn:j/1", "j1", "x", "Completed", "InvokeModel", 10.0, 20.0, None, 5.0, 5.0, 5.0, 0.0)
    states = (
        TaskState(KEY, "1", values=values, insights=(group,), up=True, cloudwatch_timestamps=True),
        TaskState(
            TaskKey("t", "us-east-1", "bedrock:jobs"),
            "1",
            jobs=(job,),
            jobs_finished=(JobsFinished("x", "Completed", 2),),
            job_usage=(JobUsage("arn:j/1", 1234, 567),),
        ),
    )
    store = Store(lambda: 0.0, prices=(Price("x", 1.0, 2.0),))
    for task in states:
        store.publish(task)
    snapshot = store.snapshot
    renderer = Renderer()
    fast = renderer.text(snapshot)
    assert fast == renderer.text(snapshot)  # again, from the kept prefixes
    collector = SnapshotCollector(snapshot)
    assert fast == format_text(collector.collect())
    assert renderer.dropped == collector.dropped == 1
    assert (
        b'aws_bedrock_batch_m_maximum{account_id="111111111111",region="us-east-1",dimension_ModelId="x"} 4.0' in fast
    )


def test_kept_prefixes_follow_new_series_objects() -> None:
    """Prefixes are found by the identity of the series key: a new key (another series, or an equal one made anew)
    gets its own prefix, never the one of a key it replaced."""
    from exporter.sinks.prometheus import Renderer
    from tests.exposition_oracle import SnapshotCollector, format_text

    renderer = Renderer()
    store = Store(lambda: 0.0)
    for round_ in range(3):
        models = [f"r{round_}-m{i}" for i in range(50)] + ["same"]
        records = tuple(
            CloudWatchValue(SeriesKey.of("X", "Metric", {"ModelId": m}), "Average", float(round_ + i), None, 1.0)
            for i, m in enumerate(models)
        )
        store.publish(TaskState(key=KEY, account_id="1", values=records, up=True, last_success=1.0))
        snapshot = store.snapshot
        assert renderer.text(snapshot) == format_text(SnapshotCollector(snapshot).collect())


def test_a_snapshot_that_renders_alike_reuses_the_bytes_and_any_change_renders_again() -> None:
    from exporter.sinks.prometheus import Renderer

    store = Store(lambda: 0.0)
    exposition = Exposition(store, CollectorRegistry())
    series = [SeriesKey.of("X", "Metric", {"ModelId": f"m{i}"}) for i in range(3)]

    def publish_values(values: list[float], stamp: float | None = None, stamps: bool = False) -> bytes:
        records = tuple(CloudWatchValue(s, "Average", v, stamp, 1.0) for s, v in zip(series, values, strict=True))
        store.publish(
            TaskState(key=KEY, account_id="1", values=records, up=True, last_success=1.0, cloudwatch_timestamps=stamps)
        )
        body = exposition.parts()[0]
        assert body == Renderer().text(store.snapshot)  # whatever the path, the bytes of a fresh render
        return body

    first = publish_values([math.nan, 1.0, 0.0])
    assert publish_values([float("nan"), 1.0, 0.0]) is first  # another NaN object, same text: the same bytes
    assert publish_values([math.nan, 1.0, -0.0]) is not first  # -0.0 is written differently
    second = publish_values([math.nan, 2.0, 0.0])
    assert second is not first and b" 2.0\n" in second
    stamped = publish_values([math.nan, 2.0, 0.0], stamp=5.0, stamps=True)
    assert stamped is not second and b" 5000\n" in stamped
    assert publish_values([math.nan, 2.0, 0.0], stamp=6.0, stamps=True) is not stamped  # a new datapoint time
    series[0] = SeriesKey.of("X", "Metric", {"ModelId": "other"})
    assert b"other" in publish_values([math.nan, 2.0, 0.0], stamp=6.0, stamps=True)  # a new series
    store.publish(TaskState(key=TaskKey("t", "eu-west-1", "X"), account_id="1", up=True))
    assert exposition.parts()[0] == Renderer().text(store.snapshot)  # a new task


def test_a_changed_estimate_renders_again_though_the_jobs_rows_are_the_same() -> None:
    """ETAs, drain times and queue waits are the exporter's own, made each cycle: they move while the jobs do not."""
    from exporter.model import Job, JobEta, JobQueueWait

    store = Store(lambda: 0.0)
    exposition = Exposition(store, CollectorRegistry())
    job = Job("arn:j", "n", "m", "InProgress", "InvokeModel", 0.0, None, None, 10.0, 5.0, None, None)
    key = TaskKey("t", "us-east-1", "bedrock:jobs")
    bodies = []
    for eta, wait in ((100.0, 30.0), (90.0, 30.0), (90.0, 45.0)):
        state = TaskState(key=key, account_id="1", jobs=(job,), job_eta=(JobEta("arn:j", eta),), up=True)
        store.publish(replace(state, job_queue_wait=(JobQueueWait("arn:j", wait),)))
        bodies.append(exposition.parts()[0])
    assert b"bedrock_batch_job_eta_seconds" in bodies[0] and b" 100.0\n" in bodies[0]
    assert b" 90.0\n" in bodies[1] and b"bedrock_batch_job_queue_wait_seconds" in bodies[2] and b" 45.0\n" in bodies[2]


def test_kept_prefixes_by_position_survive_inserts_removals_and_changed_statistics() -> None:
    """The renderer keeps prefixes by position: a series inserted, removed or moved, or a statistic changed at a
    position, must never reuse another series' prefix; the kept lists shrink with the values."""
    from exporter.sinks.prometheus import Renderer
    from tests.exposition_oracle import SnapshotCollector, format_text

    keys = [SeriesKey.of("X", "Metric", {"ModelId": f"m{i}"}) for i in range(6)]
    layouts = [
        [(k, "Average") for k in keys],
        [(keys[0], "Average"), (keys[5], "Average"), *[(k, "Average") for k in keys[1:5]]],  # inserted near the start
        [(k, "Maximum" if i == 2 else "Average") for i, k in enumerate(keys)],  # a statistic changed in place
        [(k, "Average") for k in reversed(keys)],  # every position moved
        [(keys[3], "Average")],  # most removed
        [(k, "Average") for k in keys],  # back
    ]
    renderer = Renderer()
    store = Store(lambda: 0.0)
    for round_, layout in enumerate(layouts):
        records = tuple(CloudWatchValue(k, stat, float(round_), None, 1.0) for k, stat in layout)
        store.publish(TaskState(key=KEY, account_id="1", values=records, up=True, last_success=1.0))
        snapshot = store.snapshot
        assert renderer.text(snapshot) == format_text(SnapshotCollector(snapshot).collect())
        (kept,) = renderer._kept.values()
        assert len(kept.prefixes) == len(kept.series) == len(layout)


def test_the_kept_layout_is_reused_only_while_it_holds_and_other_lines_sharing_a_family_take_part() -> None:
    """The renderer keeps where each family's lines are (exporter.sinks.prometheus.Renderer): values that move reuse
    it; a new series, a new task, or another line with a CloudWatch family's name lays the lines out again, and every
    render writes what the collector path writes, duplicates dropped in the Snapshot's order."""
    from exporter.model import InsightsValue, Job
    from exporter.sinks.prometheus import Renderer
    from tests.exposition_oracle import SnapshotCollector, format_text

    keys = [SeriesKey.of("X", "Metric", {"ModelId": f"m{i}"}) for i in range(4)]
    other = TaskKey("t", "us-east-1", "Y")  # another task with the same account and region: its lines can collide
    renderer = Renderer()
    store = Store(lambda: 0.0)

    def check(*states: TaskState) -> None:
        for task in states:
            store.publish(task)
        snapshot = store.snapshot
        collector = SnapshotCollector(snapshot)
        assert renderer.text(snapshot) == format_text(collector.collect())
        assert renderer.dropped == collector.dropped

    def values(number: float, count: int = 4) -> tuple[CloudWatchValue, ...]:
        return tuple(CloudWatchValue(k, "Average", number + i, None, 1.0) for i, k in enumerate(keys[:count]))

    def job(status: str) -> Job:
        return Job("arn:j/1", "j1", "m0", status, "InvokeModel", 10.0, 20.0, None, 5.0, 5.0, 5.0, 0.0)

    check(TaskState(KEY, "1", values=values(1.0), jobs=(job("InProgress"),), up=True))
    layout = renderer._layout
    check(TaskState(KEY, "1", values=values(2.0), jobs=(job("Completed"),), up=True))  # values and job rows moved
    assert renderer._layout is layout  # laid out once, reused
    check(TaskState(other, "1", values=values(3.0, 2), up=True))  # a new task repeating two of the first's series
    assert renderer._layout is not layout and renderer.dropped == 2
    layout = renderer._layout
    check(TaskState(other, "1", values=values(4.0, 2), up=True))
    assert renderer._layout is layout and renderer.dropped == 2  # the duplicates stay dropped on the kept layout
    # an Insights group named like the CloudWatch family, with the labels of the first task's m1 series: written
    # after that series in the Snapshot's order, so the group's line is the one dropped; and it shares the block
    clash = InsightsValue("aws_x_metric_average", "SELECT ...", (("ModelId", "m1"),), 9.0, None, 1.0, 1.0)
    check(TaskState(KEY, "1", values=values(5.0), insights=(clash,), up=True))
    assert renderer.dropped == 3
    # the first task's m1 gone: the group now comes before the second task's m1, which is dropped instead
    check(TaskState(KEY, "1", values=(values(6.0)[0],), insights=(clash,), up=True))
    check(TaskState(KEY, "1", values=values(7.0), up=True))  # the group gone again
    assert renderer.dropped == 2


def test_price_lines_follow_the_reported_model_ids_and_the_table() -> None:
    """The renderer makes its price lines again only when the reported model IDs or the prices change: each render
    still writes what the collector path writes (a model ID reported under a regional profile gets its own line)."""
    from exporter.model import Job, Price
    from exporter.sinks.prometheus import Renderer
    from tests.exposition_oracle import SnapshotCollector, format_text

    renderer = Renderer()
    store = Store(lambda: 0.0, prices=(Price("anthropic.claude", 1.0, 2.0), Price("amazon.nova", 0.5, 1.0)))

    def check(models: list[str], job_model: str | None = None) -> str:
        values = tuple(
            CloudWatchValue(SeriesKey.of("X", "Metric", {"ModelId": m}), "Average", 1.0, None, 1.0) for m in models
        )
        jobs = (
            ()
            if job_model is None
            else (Job("arn:j", "j", job_model, "InProgress", "InvokeModel", 1.0, None, None, 1.0, 0.0, 0.0, 0.0),)
        )
        store.publish(TaskState(KEY, "1", values=values, jobs=jobs, up=True))
        text = renderer.text(store.snapshot)
        assert text == format_text(SnapshotCollector(store.snapshot).collect())
        return text.decode()

    assert 'model_id="us.anthropic.claude"' not in check(["amazon.nova"])
    assert 'model_id="us.anthropic.claude"' in check(["amazon.nova", "us.anthropic.claude"])  # a new series
    assert 'model_id="eu.amazon.nova"' in check(["amazon.nova"], job_model="eu.amazon.nova")  # a job's model
    assert 'model_id="eu.amazon.nova"' not in check(["amazon.nova"])
    store.new_generation({KEY}, (Price("amazon.nova", 0.7, 1.0),))  # a reload with other prices
    assert 'per_million_tokens{model_id="amazon.nova"} 0.7' in check(["amazon.nova"])


def test_every_built_in_family_is_documented_for_prometheus_and_otlp() -> None:
    from pathlib import Path

    from exporter.families import BUILTIN
    from exporter.sinks.otlp import FIXED_NAMES

    docs = Path(__file__).resolve().parents[2] / "docs"
    metrics, otlp = (docs / "metrics.md").read_text(), (docs / "otlp.md").read_text()
    counters = {f.name for f in BUILTIN if f.kind == "counter"}
    names = [f.name + ("_total" if f.name in counters else "") for f in BUILTIN]
    assert [n for n in names if f"`{n}`" not in metrics] == []
    assert [f.name for f in BUILTIN if f.name not in FIXED_NAMES] == []  # else pushed under its raw name, no unit
    assert [f.name for f in BUILTIN if f"`{FIXED_NAMES[f.name].name}`" not in otlp] == []
