"""Per-namespace defaults as data: what a namespace polls when `metrics` is unset, and how its series behave.

Adding a namespace default is one entry in NAMESPACE_DEFAULTS; nothing else in the exporter names a namespace.
(YACE keeps its per-namespace knowledge as one table too: one entry per service.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.model import BEDROCK_BATCH_NAMESPACE, MissingData


@dataclass(frozen=True)
class NamespaceDefaults:
    """What a namespace does when the config leaves it to the defaults."""

    # (MetricName, statistics) polled when the namespace's `metrics` is unset; empty: `metrics` is required.
    metrics: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # What a Complete answer without a datapoint shows (the namespace's `missing_data` overrides it).
    missing_data: MissingData = MissingData.NAN
    # Polling follows the Bedrock job collector: paused in a region while it has no unfinished job.
    follows_jobs: bool = False
    # The dimension that names a Bedrock model (status page rows, price joins); None: no model here.
    model_dimension: str | None = None
    # OpenTelemetry units of its metrics (CloudWatch reports them all as Count); others get no unit.
    units: Mapping[str, str] = field(default_factory=dict)


# Any namespace without an entry: `metrics` required, no datapoint is NaN (as YACE), always polled.
GENERIC = NamespaceDefaults()

NAMESPACE_DEFAULTS: dict[str, NamespaceDefaults] = {
    # Why these statistics: the pending metrics are gauges of a backlog, so Maximum (worst point in the period, what
    # alerts want) and Average (smoothed) are useful; the per-minute throughput metrics are rates, so Average is the
    # rate CloudWatch reports and Sum totals all datapoints in the period (they differ when several jobs publish).
    # Bedrock publishes these only while batch work exists, so no datapoint means nothing pending or processed: zero.
    BEDROCK_BATCH_NAMESPACE: NamespaceDefaults(
        metrics=(
            ("NumberOfRecordsPendingProcessing", ("Maximum", "Average")),
            ("NumberOfTokensPendingProcessing", ("Maximum", "Average")),
            ("NumberOfInputTokensProcessedPerMinute", ("Sum", "Average")),
            ("NumberOfOutputTokensProcessedPerMinute", ("Sum", "Average")),
        ),
        missing_data=MissingData.ZERO,
        follows_jobs=True,
        model_dimension="ModelId",
        units=MappingProxyType(
            {
                "NumberOfRecordsPendingProcessing": "{record}",
                "NumberOfTokensPendingProcessing": "{token}",
                "NumberOfInputTokensProcessedPerMinute": "{token}/min",
                "NumberOfOutputTokensProcessedPerMinute": "{token}/min",
            }
        ),
    ),
}


def defaults_for(namespace: str) -> NamespaceDefaults:
    """The namespace's entry, else the generic defaults."""
    return NAMESPACE_DEFAULTS.get(namespace, GENERIC)
