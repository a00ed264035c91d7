"""The Prometheus sink: names the Snapshot's records the Prometheus (YACE) way and renders them once per Snapshot."""

from __future__ import annotations

import io
import logging
import math
import struct
import threading
import zlib
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.utils import floatToGoString

from exporter import families
from exporter.families import Family, Sample
from exporter.model import Price, SeriesKey, TaskKey, TaskState
from exporter.snapshot import Snapshot, Store

log = logging.getLogger(__name__)

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS
_GZIP_LEVEL = 6
_CRC_PIECE = 5 * 1024  # CPython's zlib.crc32 keeps the GIL for inputs up to 5 KB (quicker than giving it up)
# The missing-data values and the like, with the line's end, shared rather than encoded once per line (an idle region's
# series all say NaN)
_COMMON_LINES = {text: f"{text}\n".encode() for text in ("NaN", "0.0", "+Inf", "-Inf", "1.0")}


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

    __slots__ = ("families", "models", "prefixes", "series", "statistics")

    def __init__(self) -> None:
        self.series: list[SeriesKey] = []
        self.statistics: list[str] = []
        self.families: list[Family] = []
        self.prefixes: list[bytes] = []
        self.models: frozenset[str] | None = None  # the series' ModelId values (None: to be found again)

    def model_ids(self) -> frozenset[str]:
        """The ModelId dimension values of the kept series (as families.model_ids finds them in the values)."""
        if self.models is None:
            self.models = frozenset(families.series_model_ids(self.series))
        return self.models

    def update(self, state: TaskState) -> bool:
        """Make the prefixes of `state`'s values (reusing those kept); True when any position changed."""
        account, region = state.account_id, state.key.region
        keys, statistics, found_families, prefixes = self.series, self.statistics, self.families, self.prefixes
        size = len(keys)
        changed = len(state.values) != size
        for position, value in enumerate(state.values):
            series = value.series
            if position < size and keys[position] is series and statistics[position] == value.statistic:
                continue
            changed = True
            family = families.cloudwatch_family(series.namespace, series.metric, value.statistic)
            prefix = _prefix(family, families.series_labels(account, region, series)).encode()
            if position < size:
                keys[position], statistics[position] = series, value.statistic
                found_families[position], prefixes[position] = family, prefix
            else:
                keys.append(series)
                statistics.append(value.statistic)
                found_families.append(family)
                prefixes.append(prefix)
                size += 1
        for column in (keys, statistics, found_families, prefixes):  # series gone since: their prefixes go
            del column[len(state.values) :]
        if changed:
            self.models = None
        return changed


_Row = tuple[Family, bytes, float, float | None]  # a line other than a CloudWatch value's: family, prefix, value, stamp
_Part = tuple[int, "array[int]"] | _Row  # (task index, positions of a family's lines in its values) or one row


class Renderer:
    """The exposition bytes of a Snapshot, as the plain oracle (tests/exposition_oracle.py) gives them, faster
    and in less memory.

    A CloudWatch series' line prefix (name and escaped labels, as bytes) is kept from one render to the next, so a
    render formats only the values. The poller publishes a task's values in the same order every cycle, with the same
    SeriesKey objects while its series list holds, so each task keeps its prefixes by position (`_Kept`): the value at
    position i reuses the kept prefix when its key is the same object (identity: hashing 20,000 keys' dimension
    tuples was a fifth of a render) with the same statistic; any other value gets a new prefix in that position. Kept
    by position in lists, 20,000 prefixes take 4.0 MB (6.8 MB as a dictionary by key).

    Lines are grouped by family in the text format, so the renderer also keeps its layout: per task and family, the
    positions (a 4-byte array) of the lines to write, duplicates already dropped. The layout is made again only when
    a prefix or the list of tasks changed (or, never in a valid configuration, when another line shares a CloudWatch
    family's name); otherwise a render writes each family's lines in order straight into the body's buffer: no set of
    20,000 prefixes, no list of pieces.
    """

    def __init__(self) -> None:
        self._kept: dict[tuple[TaskKey, str], _Kept] = {}  # per task (key, account)
        self._tasks: tuple[tuple[TaskKey, str], ...] = ()  # the tasks the layout is for, in order
        self._layout: list[list[tuple[Family, array[int]]]] = []  # per task: (family, positions) by first appearance
        self._names: frozenset[str] = frozenset()  # the families of the layout's lines
        self._dropped = 0  # CloudWatch duplicates the layout leaves out
        self._prices: tuple[tuple[Price, ...], set[str], list[_Row]] | None = None  # the last price lines and input
        self.dropped = 0

    def text(self, snapshot: Snapshot) -> bytes:
        """The exposition text."""
        states = list(snapshot.tasks.values())
        tasks = tuple((state.key, state.account_id) for state in states)
        self._kept = {task: self._kept.get(task) or _Kept() for task in tasks}  # updated in place: no alloc
        kept = list(self._kept.values())  # in the order of `tasks` and `states`
        changed = tasks != self._tasks
        for mine, state in zip(kept, states, strict=True):
            changed = mine.update(state) or changed
        prices = snapshot.price_table
        rows: list[list[_Row]] = [self._price_rows(snapshot.prices, kept, states)]
        for state in states:
            base = families.task_labels(state.account_id, state.key.region)
            stamps = state.cloudwatch_timestamps
            insights = [
                (
                    family := families.insights_family(group.query, group.expression),
                    _prefix(family, families.record_labels(base, group.group)).encode(),
                    group.value,
                    group.timestamp if stamps else None,
                )
                for group in state.insights
            ]
            rows.append(insights + _rows(families.job_samples(state, prices)))
        shared = any(row[0].name in self._names for segment in rows for row in segment)
        skip: set[int] = set()
        if changed or shared:
            skip = self._lay_out(kept, rows if shared else None)
            self._tasks = () if shared else tasks  # a layout with other lines in it holds for this render only
        seen: set[bytes] = set()  # the other lines' prefixes (a few): duplicates among them are dropped too
        dropped = self._dropped
        blocks: dict[str, tuple[Family, list[_Part]]] = {}
        for index, segment in enumerate(rows):
            if index:  # segment 0 holds the prices; each task's CloudWatch lines come before its other lines
                for family, positions in self._layout[index - 1]:
                    blocks.setdefault(family.name, (family, []))[1].append((index - 1, positions))
            for row in segment:
                if id(row) in skip or row[1] in seen:
                    dropped += 1
                    continue
                seen.add(row[1])
                blocks.setdefault(row[0].name, (row[0], []))[1].append(row)
        self.dropped = dropped
        return self._write(blocks, states, [mine.prefixes for mine in kept])

    def _price_rows(self, prices: tuple[Price, ...], kept: list[_Kept], states: list[TaskState]) -> list[_Row]:
        """The price lines (families.price_samples), made again only when the prices or the reported model IDs
        changed: resolving 5,000 model IDs against the table took 5 ms of a render."""
        models = set().union(*(mine.model_ids() for mine in kept))  # families.model_ids, the series' part kept
        for state in states:
            models.update(families.other_model_ids(state))
        if self._prices is None or self._prices[0] != prices or self._prices[1] != models:
            self._prices = (prices, models, _rows(families.price_samples(prices, models)))
        return self._prices[2]

    def _lay_out(self, kept: list[_Kept], rows: list[list[_Row]] | None) -> set[int]:
        """Where each family's lines are, duplicates dropped (the first in the Snapshot's order wins). `rows`, when
        given, are the other lines, which then take part: the ids of those found to be duplicates are returned."""
        seen: set[bytes] = set()
        skip: set[int] = set()
        layout: list[list[tuple[Family, array[int]]]] = []
        dropped = 0
        for index in range(len(kept) + 1):
            for row in rows[index] if rows is not None else ():  # the prices (0) or the previous task's other lines
                if row[1] in seen:
                    skip.add(id(row))
                else:
                    seen.add(row[1])
            if index == len(kept):
                break
            mine = kept[index]
            positions: dict[str, tuple[Family, array[int]]] = {}
            for position, (family, prefix) in enumerate(zip(mine.families, mine.prefixes, strict=True)):
                if prefix in seen:
                    dropped += 1
                    continue
                seen.add(prefix)
                positions.setdefault(family.name, (family, array("I")))[1].append(position)
            layout.append(list(positions.values()))
        self._layout, self._dropped = layout, dropped
        self._names = frozenset(family.name for task in layout for family, _ in task)
        return skip

    def _write(
        self, blocks: dict[str, tuple[Family, list[_Part]]], states: list[TaskState], prefixes: list[list[bytes]]
    ) -> bytes:
        # Written into one BytesIO, whose getvalue() hands over its own buffer (no copy): the body is the only big
        # allocation. `b"".join` of two pieces a line would need 80 bytes of buffer bookkeeping per piece (3.2 MB at
        # 20,000 lines) on top of the list and the value texts.
        out = io.BytesIO()
        write = out.write
        for family, parts in blocks.values():
            write(_comment_lines(_exposed_name(family), family.help, family.kind).encode())
            for part in parts:
                if len(part) == 2:
                    index, positions = part
                    state, mine = states[index], prefixes[index]
                    values, stamps = state.values, state.cloudwatch_timestamps
                    for position in positions:
                        value = values[position]
                        write(mine[position])
                        write(_value_text(value.value, value.timestamp if stamps else None))
                else:
                    _, prefix, number, stamp = part
                    write(prefix)
                    write(_value_text(number, stamp))
        return out.getvalue()


def _value_text(value: float, stamp: float | None) -> bytes:
    """A line's value and end: ` 1.5\n`, or ` 1.5 1700000000000\n` with the datapoint's time."""
    text = floatToGoString(value)  # type: ignore[no-untyped-call]
    if stamp is None:
        return _COMMON_LINES.get(text) or (text + "\n").encode()
    return f"{text} {int(float(stamp) * 1000)}\n".encode()


def _rows(samples: Iterable[Sample]) -> list[_Row]:
    return [(s.family, _prefix(s.family, s.labels).encode(), s.value, s.timestamp) for s in samples]


def render(
    snapshot: Snapshot, on_dropped: Callable[[int], None] | None = None, renderer: Renderer | None = None
) -> RenderedSnapshot:
    renderer = renderer or Renderer()
    body = renderer.text(snapshot)
    if renderer.dropped and on_dropped is not None:
        on_dropped(renderer.dropped)
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return RenderedSnapshot(snapshot.version, body, deflated, zlib.crc32(body))


def gzip_parts(rendered: RenderedSnapshot, tail: bytes) -> tuple[bytes, bytes, bytes]:
    """One gzip member holding rendered.body + tail, in three parts sent one after the other (the deflated body is
    not copied); only the (small) tail is compressed now."""
    # Made during the scrape: one zlib call that gives the GIL up (compress) instead of three (a compressor's compress
    # and flush, and crc32, which gives it up past 5 KB); each give-up waits for the GIL again while polling runs
    deflated_tail = zlib.compress(tail, _GZIP_LEVEL, -zlib.MAX_WBITS)
    crc = rendered.crc
    for start in range(0, len(tail), _CRC_PIECE):
        crc = zlib.crc32(tail[start : start + _CRC_PIECE], crc)
    size = (len(rendered.body) + len(tail)) & 0xFFFFFFFF
    return _GZIP_HEADER, rendered.deflated, deflated_tail + struct.pack("<II", crc, size)


def _same_text(x: float, y: float) -> bool:
    """True when both values are written alike (floatToGoString: every NaN is NaN; 0.0 and -0.0 differ)."""
    if x == y:
        return x != 0.0 or math.copysign(1.0, x) == math.copysign(1.0, y)
    return math.isnan(x) and math.isnan(y)


def _task_renders_alike(a: TaskState, b: TaskState) -> bool:
    """True when the Renderer writes the same lines for both states: their CloudWatch values (same series objects),
    Insights groups, job rows and the estimates made from them. Health and timing fields are self-metrics, written at
    scrape time."""
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
    if (a.job_eta, a.model_drain, a.job_queue_wait) != (b.job_eta, b.model_drain, b.job_queue_wait):
        return False  # the exporter's own estimates move while the jobs' rows stay
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
        self, store: Store, self_registry: CollectorRegistry, on_dropped: Callable[[int], None] | None = None
    ) -> None:
        self._rendered = RenderedSnapshot(-1, b"", b"", 0)
        self._self_registry = self_registry
        self._on_dropped = on_dropped
        self._renderer = Renderer()  # used by the publishing thread only (listeners run under no lock of ours)
        self._render_lock = threading.Lock()
        self._last: tuple[Snapshot | None, RenderedSnapshot] = (None, self._rendered)  # the last render and its input
        store.add_listener(self._on_snapshot)

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
                rendered = render(snapshot, self._on_dropped, self._renderer)
            self._last = (snapshot, rendered)
            if rendered.version > self._rendered.version:
                self._rendered = rendered

    def parts(self, gzip: bool = False) -> tuple[bytes, ...]:
        """The full /metrics body in parts to send one after the other (the 3 MB of 20,000 series are not copied per
        scrape): the cached CloudWatch series, then the self-metrics rendered now."""
        rendered = self._rendered
        tail = generate_latest(self._self_registry)  # the self-metrics, as they are now
        if gzip:
            return gzip_parts(rendered, tail)
        return rendered.body, tail

    def body(self, gzip: bool = False) -> bytes:
        """The full /metrics body as one bytes object."""
        return b"".join(self.parts(gzip))
