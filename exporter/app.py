"""Wires config, AWS clients, the Store, the poller and the sinks into one running exporter."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from exporter.aws.session import AwsClients
from exporter.config import Config
from exporter.jobs import price_samples
from exporter.poller import Poller
from exporter.selfmetrics import SelfMetrics
from exporter.sinks.prometheus import Exposition, MetricsServer, parse_listen_address
from exporter.sinks.status import StatusPage
from exporter.snapshot import Store

if TYPE_CHECKING:
    from exporter.sinks.otlp import OtlpSink

log = logging.getLogger(__name__)


class Exporter:
    """The daemon's parts; `start()` serves HTTP and polls in the background, `run_once()` polls in the foreground."""

    def __init__(
        self,
        config: Config,
        static_credentials: tuple[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.config = config
        self.store = Store(clock, static=price_samples(config.pricing))
        self.metrics = SelfMetrics(self.store, clock)
        self.clients = AwsClients(config.aws, self.metrics, static_credentials)
        self.poller = Poller(config, self.clients, self.store, self.metrics, clock, shard)
        self.exposition = Exposition(self.store, self.metrics.registry)
        self.status = StatusPage(self.store, self.metrics, clock, config.server.metrics_path)
        self.server: MetricsServer | None = None
        self.otlp: OtlpSink | None = None
        if config.mode in ("otlp", "both"):
            from exporter.sinks.otlp import OtlpSink

            self.otlp = OtlpSink(config, self.store, self.metrics.registry, clock)

    def run_once(self) -> int:
        """Poll every task once; returns how many succeeded."""
        return self.poller.run_once()

    def start(self, listen_address: str | None = None) -> str:
        """Bind the HTTP server (OSError if the address is taken), start serving and polling; returns the URL."""
        host, port = parse_listen_address(listen_address or self.config.server.listen_address)
        if self.config.mode == "otlp":
            from exporter.sinks.otlp import ProbeServer

            self.server = ProbeServer((host, port), self.store, self.exposition)
        else:
            self.server = MetricsServer((host, port), self.store, self.exposition, self.config.server.metrics_path)
        self.server.status = self.status
        self.server.start()
        self.poller.start()
        if self.otlp is not None:
            self.otlp.start()
        if self.config.mode == "otlp":
            log.info("serving /healthz and /readyz on %s (metrics are pushed over OTLP)", self.server.url)
        else:
            log.info("serving metrics on %s%s", self.server.url, self.config.server.metrics_path)
        return self.server.url

    def stop(self) -> None:
        self.poller.stop()
        if self.otlp is not None:
            self.otlp.stop()
        if self.server is not None:
            self.server.stop()
