"""Where the Store's Snapshots go. `prometheus` is pulled (the HTTP server serves /metrics and the status page from
`exporter.sinks.prometheus` and `exporter.sinks.status`); push sinks (`otlp`) run their own loop behind `Sink`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from exporter.config import Config
    from exporter.snapshot import Store


class Sink(Protocol):
    """A push sink: reads the Store's latest Snapshot on its own schedule; it counts its failures, never raises."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


# How exporter.app builds a push sink named in `sinks:` (a third one: a file here and an entry in app.PUSH_SINKS).
SinkFactory = Callable[["Config", "Store", "CollectorRegistry", Callable[[], float]], Sink]
