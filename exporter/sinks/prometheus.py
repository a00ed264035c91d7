"""The Prometheus sink: names the Snapshot's records the Prometheus (YACE) way and renders them once per Snapshot."""

from __future__ import annotations

import logging
import math
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import families
from exporter.families import Family, Sample
from exporter.model import SeriesKey, TaskState
from exporter.naming import dimension_label
from exporter.snapshot import Snapshot, Store

log = logging.getLogger(__name__)

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS
_GZIP_LEVEL = 6
_CHECK_EVERY = 2048  # series between two checkpoints of a render (exporter.priority)
# The missing-data values and the like, shared rather than encoded once per line (an idle region's series all say NaN)
_COMMON_VALUES = {text: text.encode() for text in ("NaN", "0.0", "+Inf", "-Inf", "1.0")}


def cloudwatch_samples(state: TaskState) -> Iterator[Sample]:
    """YACE-named series: `aws_<namespace>_<metric>_<statistic>` with `dimension_<Name>` labels."""
    base = families.task_labels(state.account_id, state.key.region)
    stamps = state.cloudwatch_timestamps
    for value in state.values:
        series = value.series
        family = families.cloudwatch_family(series.namespace, series.metric, value.statistic)
        labels = (*base, *((dimension_label(k), v) for k, v in series.dimensions))
        yield Sample(family, labels, value.value, value.timestamp if stamps else None)
    for group in state.insights:
        family = families.insights_family(group.query, group.expression)
        labels = (*base, *((dimension_label(k), v) for k, v in group.group))
        yield Sample(family, labels, group.value, group.timestamp if stamps else None)


def samples(snapshot: Snapshot) -> Iterator[Sample]:
    """Every series of a Snapshot, named the Prometheus way."""
    yield from families.price_samples(snapshot.prices, families.model_ids(snapshot.tasks.values()))
    prices = snapshot.price_table
    for state in snapshot.tasks.values():
        yield from cloudwatch_samples(state)
        yield from families.job_samples(state, prices)


class SnapshotCollector(Collector):
    """Yields the series of one Snapshot as metric families (no AWS calls, no other work).

    Two series with one name and one label set (e.g. dimension names `Model-Id` and `Model_Id`, which map to one
    label) are exported once: the first in the Snapshot's order wins, the others are counted in `dropped`.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self.dropped = 0

    def collect(self) -> Iterator[Metric]:
        found: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self.dropped = 0
        for sample in samples(self._snapshot):
            family = sample.family
            key = (family.name, sample.labels)
            if key in seen:
                self.dropped += 1
                continue
            seen.add(key)
            metric = found.get(family.name)
            if metric is None:
                metric = found[family.name] = Metric(family.name, family.help, family.kind)
            name = f"{family.name}_total" if family.kind == "counter" else family.name
            metric.add_sample(name, dict(sample.labels), sample.value, sample.timestamp)
        yield from found.values()


@dataclass(frozen=True)
class RenderedSnapshot:
    """The exposition body of one Snapshot, plain and as the start of a gzip stream."""

    version: int
    body: bytes
    deflated: bytes  # raw deflate blocks ending in a sync flush, so more blocks can follow
    crc: int


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _comment_lines(name: str, doc: str, kind: str) -> str:
    """A family's `# HELP` and `# TYPE` lines (the help text escaped as the text format wants)."""
    escaped = doc.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} {kind}\n"


def format_text(families: Iterable[Metric]) -> bytes:
    """The text exposition format (0.0.4) of `families`.

    prometheus-client's generate_latest re-validates every name on every sample, which took 170 ms at 10,000
    series; our names are valid by construction (exporter.naming), so this does the same formatting in a fraction.
    """
    out: list[str] = []
    for family in families:
        name = f"{family.name}_total" if family.type == "counter" else family.name
        out.append(_comment_lines(name, family.documentation, family.type))
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels.items())
            line = f"{sample.name}{{{labels}}} " if labels else f"{sample.name} "
            line += floatToGoString(sample.value)  # type: ignore[no-untyped-call]
            if sample.timestamp is not None:
                line += f" {int(float(sample.timestamp) * 1000)}"
            out.append(line + "\n")
    return "".join(out).encode("utf-8")


def _exposed_name(family: Family) -> str:
    return f"{family.name}_total" if family.kind == "counter" else family.name


def _prefix(family: Family, labels: tuple[tuple[str, str], ...]) -> str:
    """`name{label="value",...} `: everything of an exposition line but its value."""
    name = _exposed_name(family)
    if not labels:
        return name + " "
    return name + "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels) + "} "


class _Kept:
    """One task's line prefixes by position in its values: the SeriesKey and statistic each was made for."""

    __slots__ = ("families", "prefixes", "series", "statistics")

    def __init__(self) -> None:
        self.series: list[SeriesKey] = []
        self.statistics: list[str] = []
        self.families: list[Family] = []
        self.prefixes: list[bytes] = []

    def keep(self, count: int) -> None:
        """Forget the positions from `count` on."""
        for column in (self.series, self.statistics, self.families, self.prefixes):
            del column[count:]


class Renderer:
    """The exposition bytes of a Snapshot, as `format_text(SnapshotCollector(snapshot).collect())` gives them, faster
    and in less memory.

    A CloudWatch series' line prefix (name and escaped labels, as bytes) is kept from one render to the next, so a
    render formats only the values. The poller publishes a task's values in the same order every cycle, with the same
    SeriesKey objects while its series list holds, so each task keeps its prefixes by position (`_Kept`): the value at
    position i reuses the kept prefix when its key is the same object (identity: hashing 20,000 keys' dimension
    tuples was a fifth of a render) with the same statistic; any other value gets a new prefix in that position. Kept
    by position in lists, 20,000 prefixes take 4.0 MB (6.8 MB as a dictionary by key). The lines are joined once into
    the final bytes, with no per-line or per-family strings.
    """

    def __init__(self) -> None:
        self._kept: dict[tuple[object, str], _Kept] = {}  # per task (key, account)
        self.dropped = 0

    def text(self, snapshot: Snapshot, between: Callable[[], None] | None = None) -> bytes:
        """The exposition text; `between` is called every _CHECK_EVERY series (a checkpoint: exporter.priority)."""
        blocks: dict[str, tuple[Family, list[bytes]]] = {}
        seen: set[bytes] = set()
        dropped = 0

        def add(family: Family, prefix: bytes, value: float, stamp: float | None) -> None:
            nonlocal dropped
            if prefix in seen:  # one name and label set exported once: the first wins (see SnapshotCollector)
                dropped += 1
                return
            seen.add(prefix)
            block = blocks.get(family.name)
            if block is None:
                block = blocks[family.name] = (family, [])
            text = floatToGoString(value)  # type: ignore[no-untyped-call]
            end = b"\n" if stamp is None else b" %d\n" % int(float(stamp) * 1000)
            block[1].extend((prefix, _COMMON_VALUES.get(text) or text.encode(), end))

        def add_rows(rows: Iterable[Sample]) -> None:
            for row in rows:
                add(row.family, _prefix(row.family, row.labels).encode(), row.value, row.timestamp)

        kept: dict[tuple[object, str], _Kept] = {}
        add_rows(families.price_samples(snapshot.prices, families.model_ids(snapshot.tasks.values())))
        prices = snapshot.price_table
        for state in snapshot.tasks.values():
            stamps = state.cloudwatch_timestamps
            account, region = state.account_id, state.key.region
            task = (state.key, account)
            mine = self._kept.get(task) or _Kept()  # updated in place: a render with no new series allocates nothing
            keys, statistics, found_families, prefixes = mine.series, mine.statistics, mine.families, mine.prefixes
            size = len(keys)
            for position, value in enumerate(state.values):
                if between is not None and not position % _CHECK_EVERY:
                    between()
                series = value.series
                if position < size and keys[position] is series and statistics[position] == value.statistic:
                    family, prefix = found_families[position], prefixes[position]
                else:
                    family = families.cloudwatch_family(series.namespace, series.metric, value.statistic)
                    labels = (
                        *families.task_labels(account, region),
                        *((dimension_label(k), v) for k, v in series.dimensions),
                    )
                    prefix = _prefix(family, labels).encode()
                    if position < size:
                        keys[position], statistics[position] = series, value.statistic
                        found_families[position], prefixes[position] = family, prefix
                    else:
                        keys.append(series)
                        statistics.append(value.statistic)
                        found_families.append(family)
                        prefixes.append(prefix)
                        size += 1
                add(family, prefix, value.value, value.timestamp if stamps else None)
            mine.keep(len(state.values))  # series gone since: their prefixes go
            kept[task] = mine
            base = families.task_labels(account, region)
            for group in state.insights:
                family = families.insights_family(group.query, group.expression)
                labels = (*base, *((dimension_label(k), v) for k, v in group.group))
                add(family, _prefix(family, labels).encode(), group.value, group.timestamp if stamps else None)
            add_rows(families.job_samples(state, prices))
        self._kept = kept
        self.dropped = dropped
        out: list[bytes] = []
        for family, pieces in blocks.values():
            out.append(_comment_lines(_exposed_name(family), family.help, family.kind).encode())
            out += pieces
            pieces.clear()  # each family's pieces go as soon as they are in `out`
        return b"".join(out)


def render(
    snapshot: Snapshot,
    on_dropped: Callable[[int], None] | None = None,
    renderer: Renderer | None = None,
    between: Callable[[], None] | None = None,
) -> RenderedSnapshot:
    renderer = renderer or Renderer()
    body = renderer.text(snapshot, between)
    if between is not None:
        between()
    if renderer.dropped and on_dropped is not None:
        on_dropped(renderer.dropped)
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return RenderedSnapshot(snapshot.version, body, deflated, zlib.crc32(body))


def gzip_parts(rendered: RenderedSnapshot, tail: bytes) -> tuple[bytes, bytes, bytes]:
    """One gzip member holding rendered.body + tail, in three parts sent one after the other (the deflated body is
    not copied); only the (small) tail is compressed now."""
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated_tail = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
    crc = zlib.crc32(tail, rendered.crc)
    size = (len(rendered.body) + len(tail)) & 0xFFFFFFFF
    return _GZIP_HEADER, rendered.deflated, deflated_tail + struct.pack("<II", crc, size)


_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# generate_latest's renaming of OpenMetrics types in the text format: type -> (name suffix, TYPE)
_TEXT_TYPES = {
    "counter": ("_total", "counter"),
    "info": ("_info", "gauge"),
    "stateset": ("", "gauge"),
    "gaugehistogram": ("", "histogram"),
    "unknown": ("", "untyped"),
}
_OPENMETRICS_SUFFIXES = ("_created", "_gsum", "_gcount")  # generate_latest moves these into families of their own


class RegistryText:
    """prometheus-client's `generate_latest` of a registry, byte for byte, in about half the time.

    This is the self-metrics part of every /metrics answer, rendered during the scrape. generate_latest checks and
    escapes every metric and label name of every sample, and formats each family's HELP and TYPE lines anew; here the
    names are checked once (a name generate_latest would escape sends the whole registry to generate_latest) and the
    two comment lines are kept per family. tests/unit/test_exposition.py compares both on a full registry.
    """

    _MAX_KEPT = 4096  # families and names remembered; the self-metrics registry has a fixed, small set

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str, str], str] = {}
        self._names: set[str] = set()
        self._labels: set[str] = set()

    def _forget(self) -> None:
        self._headers, self._names, self._labels = {}, set(), set()

    def render(self, registry: Collector) -> bytes:
        families = list(registry.collect())
        text = self._text(families)
        return text.encode("utf-8") if text is not None else generate_latest(_Collected(families))

    def _text(self, collected: list[Metric]) -> str | None:
        if len(self._headers) > self._MAX_KEPT or len(self._names) + len(self._labels) > self._MAX_KEPT:
            self._forget()
        out: list[str] = []
        for family in collected:
            header = self._header(family)
            if header is None:
                return None
            out.append(header)
            for sample in family.samples:
                name = sample.name
                if name not in self._names:
                    if name.startswith(family.name) and name[len(family.name) :] in _OPENMETRICS_SUFFIXES:
                        return None
                    if not _LEGACY_NAME.fullmatch(name):
                        return None
                    self._names.add(name)
                labels = sample.labels
                if labels:
                    for label in labels:
                        if label not in self._labels:
                            if not _LEGACY_LABEL.fullmatch(label):
                                return None
                            self._labels.add(label)
                    pairs = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
                    line = f"{name}{{{pairs}}} {floatToGoString(sample.value)}"  # type: ignore[no-untyped-call]
                else:
                    line = f"{name} {floatToGoString(sample.value)}"  # type: ignore[no-untyped-call]
                if sample.timestamp is not None:
                    line += f" {int(float(sample.timestamp) * 1000):d}"
                out.append(line + "\n")
        return "".join(out)

    def _header(self, family: Metric) -> str | None:
        key = (family.name, family.type, family.documentation)
        header = self._headers.get(key)
        if header is None:
            suffix, kind = _TEXT_TYPES.get(family.type, ("", family.type))
            name = family.name + suffix
            if not _LEGACY_NAME.fullmatch(name):
                return None
            header = self._headers[key] = _comment_lines(name, family.documentation, kind)
        return header


class _Collected(Collector):
    """Families already collected, as a registry generate_latest can read."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _same_text(x: float, y: float) -> bool:
    """True when both values are written alike (floatToGoString: every NaN is NaN; 0.0 and -0.0 differ)."""
    if x == y:
        return x != 0.0 or math.copysign(1.0, x) == math.copysign(1.0, y)
    return math.isnan(x) and math.isnan(y)


def _task_renders_alike(a: TaskState, b: TaskState) -> bool:
    """True when the Renderer writes the same lines for both states: their CloudWatch values (same series objects),
    Insights groups and job rows. Health and timing fields are self-metrics, written at scrape time."""
    if a is b:
        return True
    stamps = a.cloudwatch_timestamps
    if (a.account_id, stamps, len(a.values), len(a.insights)) != (
        b.account_id,
        b.cloudwatch_timestamps,
        len(b.values),
        len(b.insights),
    ):
        return False
    if a.jobs != b.jobs or a.jobs_finished != b.jobs_finished or a.job_usage != b.job_usage:
        return False
    for x, y in zip(a.values, b.values, strict=True):
        if x.series is not y.series or x.statistic != y.statistic or not _same_text(x.value, y.value):
            return False
        if stamps and x.timestamp != y.timestamp:
            return False
    for i, j in zip(a.insights, b.insights, strict=True):
        if (i.query, i.expression, i.group) != (j.query, j.expression, j.group) or not _same_text(i.value, j.value):
            return False
        if stamps and i.timestamp != j.timestamp:
            return False
    return True


def renders_alike(a: Snapshot, b: Snapshot) -> bool:
    """True when `b` renders to the same exposition bytes as `a` (checked field by field, conservatively: any doubt
    renders again)."""
    if a.prices != b.prices or list(a.tasks) != list(b.tasks):
        return False
    return all(_task_renders_alike(a.tasks[key], state) for key, state in b.tasks.items())


class Exposition:
    """Keeps the rendering of the newest Snapshot; renders in the publishing thread, never in a scrape.

    A Snapshot that renders alike the last one rendered (an idle region publishing its missing-data values every
    interval, or values CloudWatch has not moved since the last cycle) reuses its bytes: checking 20,000 values takes a
    few ms, a render and its compression about 70 ms of CPU. The last rendered Snapshot is kept for that check.
    """

    def __init__(
        self,
        store: Store,
        self_registry: CollectorRegistry,
        on_dropped: Callable[[int], None] | None = None,
        between: Callable[[], None] | None = None,
    ) -> None:
        self._between = between  # a render steps aside for requests in flight (exporter.priority)
        self._lock = threading.Lock()
        self._rendered = RenderedSnapshot(-1, b"", b"", 0)
        self._self_registry = self_registry
        self._store = store
        self._on_dropped = on_dropped
        self._renderer = Renderer()  # used by the publishing thread only (listeners run under no lock of ours)
        self._render_lock = threading.Lock()
        self._registry_text = RegistryText()
        self._tail_lock = threading.Lock()
        self._last: tuple[Snapshot | None, RenderedSnapshot] = (None, self._rendered)  # the last render and its input
        store.add_listener(self._on_snapshot)

    def close(self) -> None:
        """Stop rendering new Snapshots."""
        self._store.remove_listener(self._on_snapshot)

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        with self._render_lock:  # tasks publish from several threads; the renderer's kept prefixes are not shared
            last, done = self._last
            if last is not None and renders_alike(last, snapshot):
                rendered = RenderedSnapshot(snapshot.version, done.body, done.deflated, done.crc)
                if self._renderer.dropped and self._on_dropped is not None:
                    self._on_dropped(self._renderer.dropped)  # counted per Snapshot, as a render would
            else:
                # The last Snapshot's records (20,000 at 10,000 series) go before this render allocates, not after.
                del last
                self._last = (None, done)
                rendered = render(snapshot, self._on_dropped, self._renderer, self._between)
            self._last = (snapshot, rendered)
        with self._lock:
            if rendered.version > self._rendered.version:
                self._rendered = rendered

    def parts(self, gzip: bool = False) -> tuple[bytes, ...]:
        """The full /metrics body in parts to send one after the other (the 3 MB of 20,000 series are not copied per
        scrape): the cached CloudWatch series, then the self-metrics rendered now."""
        rendered = self._rendered
        with self._tail_lock:  # scrapes run in several threads; RegistryText keeps what it learnt
            tail = self._registry_text.render(self._self_registry)
        if gzip:
            return gzip_parts(rendered, tail)
        return rendered.body, tail

    def body(self, gzip: bool = False) -> bytes:
        """The full /metrics body as one bytes object."""
        return b"".join(self.parts(gzip))
