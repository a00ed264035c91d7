"""Wires config, AWS clients, the Store, the poller and the sinks into one running exporter."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from exporter.aws.session import AwsClients
from exporter.config import Config, ConfigError, load_config
from exporter.http import MetricsServer, Router, parse_listen_address
from exporter.jobs import price_samples
from exporter.poller import Poller
from exporter.selfmetrics import SelfMetrics
from exporter.sinks.prometheus import Exposition
from exporter.sinks.status import StatusPage
from exporter.snapshot import Store
from exporter.webconfig import BasicAuth, load_web_config, tls_context

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
        config_path: str | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._static_credentials = static_credentials
        self._clock = clock
        self._shard = shard
        self._reload_lock = threading.Lock()
        self._running = False
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
        """Bind the HTTP server and start serving and polling; returns the URL.

        Raises OSError if the address is taken, ConfigError if the web config file is unusable.
        """
        host, port = parse_listen_address(listen_address or self.config.server.listen_address)
        server = self.config.server
        web = load_web_config(server.web_config_file) if server.web_config_file else None
        tls = web.tls_server_config if web is not None else None
        router = Router(
            self.store,
            self.exposition if self.config.mode != "otlp" else None,
            server.metrics_path,
            pages=(self.status,),
            auth=BasicAuth(web.basic_auth_users) if web is not None and web.basic_auth_users else None,
            reload=self.reload_from_file if server.enable_reload and self.config_path else None,
        )
        self.server = MetricsServer(
            (host, port),
            router,
            tls=tls_context(tls, server.web_config_file or "") if tls is not None else None,
        )
        self.server.start()
        self.poller.start()
        self._running = True
        if self.otlp is not None:
            self.otlp.start()
        if self.config.mode == "otlp":
            log.info("serving /healthz and /readyz on %s (metrics are pushed over OTLP)", self.server.url)
        else:
            log.info("serving metrics on %s%s", self.server.url, self.config.server.metrics_path)
        return self.server.url

    def reload_from_file(self) -> tuple[bool, str]:
        """Re-read the config file (SIGHUP, POST /-/reload); a bad file is refused and the old config stays."""
        if self.config_path is None:
            return False, "no config file to reload"
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.metrics.reload_successful.set(0)
            log.error("config reload refused, keeping the running config: %s", "; ".join(exc.problems))
            return False, "config reload refused: " + "; ".join(exc.problems)
        self.reload(config)
        return True, "config reloaded"

    def reload(self, config: Config) -> None:
        """Poll with `config` from now on: new tasks start, dropped ones are forgotten, kept ones keep their data."""
        with self._reload_lock:
            for setting in ("server", "mode", "otlp"):
                if getattr(config, setting) != getattr(self.config, setting):
                    log.warning("config reload: changes to %r take effect only after a restart", setting)
            old = self.poller
            clients = AwsClients(config.aws, self.metrics, self._static_credentials)
            poller = Poller(config, clients, self.store, self.metrics, self._clock, self._shard)
            old.stop()
            self.store.set_static(price_samples(config.pricing))
            self.store.retain({task.key for task in poller.tasks})
            self.config, self.clients, self.poller = config, clients, poller
            if self._running:
                poller.start()
            self.metrics.reload_successful.set(1)
            self.metrics.reload_timestamp.set(self._clock())
            log.info("config reloaded: %d poll tasks", len(poller.tasks))

    def stop(self) -> None:
        self._running = False
        self.poller.stop()
        if self.otlp is not None:
            self.otlp.stop()
        if self.server is not None:
            self.server.stop()
