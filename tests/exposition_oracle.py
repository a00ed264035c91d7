"""The test oracle of the Prometheus sink: every series of a Snapshot through prometheus-client's `Metric` families,
formatted as the text format (0.0.4) says, the slow plain way. `exporter.sinks.prometheus.Renderer` must give the same
bytes (tests/unit/test_exposition.py); this lived in the product until 2026-12-03 but only tests called it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import families
from exporter.families import Sample
from exporter.sinks.prometheus import _comment_lines, _escape_label
from exporter.snapshot import Snapshot


def samples(snapshot: Snapshot) -> Iterator[Sample]:
    """Every series of a Snapshot, named the Prometheus way."""
    yield from families.price_samples(snapshot.prices, families.model_ids(snapshot.tasks.values()))
    prices = snapshot.price_table
    for state in snapshot.tasks.values():
        yield from (sample for _, sample in families.record_samples(state))
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
