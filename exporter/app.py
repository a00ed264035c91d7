"""Wires config, AWS clients, the Store, the poller and the sinks into one running exporter."""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from exporter.aws.session import AwsClients
from exporter.config import Config, ConfigError, load_config
from exporter.http import MetricsServer, Router, parse_listen_address
from exporter.jobs import prices
from exporter.model import TaskKey
from exporter.poller import Poller
from exporter.preflight import config_problems
from exporter.runbooks import RunbooksPage
from exporter.selfmetrics import SelfMetrics
from exporter.sinks import Sink, SinkFactory
from exporter.sinks.otlp import OtlpSink
from exporter.sinks.prometheus import Exposition
from exporter.sinks.status import StatusPage
from exporter.snapshot import Store
from exporter.webconfig import BasicAuth, load_web_config, tls_context

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.0005  # seconds
# Push sinks by the name `sinks:` gives them (exporter.sinks.Sink); `prometheus` is served by the HTTP server.
PUSH_SINKS: dict[str, SinkFactory] = {"otlp": OtlpSink}


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
        self._reload_lock = threading.Lock()  # one reload at a time
        self._reload_waiters = threading.Lock()
        self._reload_in_flight: Future[tuple[bool, str]] | None = None
        self._running = False
        self.store = Store(clock, prices=prices(config.pricing))
        self.metrics = SelfMetrics(self.store, clock, config.pricing.cloudwatch.per_metric_and_request)
        self.clients = AwsClients(config.aws, self.metrics, static_credentials)
        self.poller = Poller(config, self.clients, self.store, self.metrics, clock, shard)
        self.poller.generation = self.store.new_generation({t.key for t in self.poller.tasks}, prices(config.pricing))
        self._exposition: Exposition | None = None
        self.status = StatusPage(self.store, self.metrics, clock, config.server.metrics_path)
        self.runbooks = RunbooksPage()
        self.server: MetricsServer | None = None
        self.sinks: dict[str, Sink] = {
            name: factory(config, self.store, self.metrics.registry, clock)
            for name, factory in PUSH_SINKS.items()
            if name in config.enabled_sinks
        }

    @property
    def otlp(self) -> OtlpSink | None:
        sink = self.sinks.get("otlp")
        return sink if isinstance(sink, OtlpSink) else None

    @property
    def exposition(self) -> Exposition:
        """The /metrics rendering, created on first use: in OTLP-only mode nothing renders exposition text."""
        if self._exposition is None:
            self._exposition = Exposition(self.store, self.metrics.registry, self.metrics.series_dropped.inc)
        return self._exposition

    def run_once(self) -> int:
        """Poll every task once; returns how many succeeded."""
        return self.poller.run_once()

    def start(self, listen_address: str | None = None) -> str:
        """Bind the HTTP server and start serving and polling; returns the URL.

        Raises OSError if the address is taken, ConfigError if the web config file is unusable.
        """
        host, port = parse_listen_address(listen_address or self.config.server.listen_address)
        # A scrape needs the GIL a few times; while a poll cycle or a render runs, each wait lasts up to the switch
        # interval (5 ms by default). A shorter interval keeps scrapes fast during polling (docs/performance.md).
        sys.setswitchinterval(SWITCH_INTERVAL)
        server = self.config.server
        web = load_web_config(server.web_config_file) if server.web_config_file else None
        tls = web.tls_server_config if web is not None else None
        serve_pages = "prometheus" in self.config.enabled_sinks  # else HTTP serves just the probes, as documented
        router = Router(
            self.store,
            self.exposition if serve_pages else None,
            server.metrics_path,
            pages=(self.status, self.runbooks) if serve_pages else (),
            auth=BasicAuth(web.basic_auth_users) if web is not None and web.basic_auth_users else None,
            reload=self.reload_from_file if server.enable_reload and self.config_path else None,
            health_without_auth=web is not None and web.health_without_auth,
        )
        self.server = MetricsServer(
            (host, port),
            router,
            tls=tls_context(tls, server.web_config_file or "") if tls is not None else None,
        )
        self.server.start()
        self.metrics.start_sampling()
        self.poller.start()
        # What lives once serving starts (modules, botocore's models, the config, the clients, the planned queries)
        # goes to the permanent generation, which the cyclic collector skips: a full collection then walks the
        # records of a cycle, not the whole process (docs/performance.md)
        gc.collect()
        gc.freeze()
        self._running = True
        for sink in self.sinks.values():
            sink.start()
        if not serve_pages:
            log.info(
                "serving /healthz and /readyz on %s (metrics are pushed: %s)", self.server.url, ", ".join(self.sinks)
            )
        else:
            log.info("serving metrics on %s%s", self.server.url, self.config.server.metrics_path)
        return self.server.url

    def reload_from_file(self) -> tuple[bool, str]:
        """Re-read the config file (SIGHUP, POST /-/reload); a bad file is refused and the old config stays.

        Requests that arrive while a reload runs share its outcome instead of starting another, so a storm of
        reloads costs one at a time and never more than two generations exist at once.
        """
        with self._reload_waiters:
            in_flight = self._reload_in_flight
            if in_flight is None:
                mine: Future[tuple[bool, str]] = Future()
                self._reload_in_flight = mine
        if in_flight is not None:
            return in_flight.result()
        try:
            outcome = self._reload_from_file()
        except Exception as exc:  # the daemon keeps its running config whatever the reload hit
            log.exception("config reload failed unexpectedly, keeping the running config")
            outcome = (False, f"config reload failed: {type(exc).__name__}")
        finally:
            with self._reload_waiters:
                self._reload_in_flight = None
        mine.set_result(outcome)
        return outcome

    def _reload_from_file(self) -> tuple[bool, str]:
        if self.config_path is None:
            return False, "no config file to reload"
        try:
            config = load_config(self.config_path)
            problems = tuple(config_problems(config))
        except ConfigError as exc:
            problems = exc.problems
        if problems:
            self.metrics.reload_successful.set(0)
            log.error("config reload refused, keeping the running config: %s", "; ".join(problems))
            return False, "config reload refused: " + "; ".join(problems)
        self.reload(config)
        return True, "config reloaded"

    def reload(self, config: Config) -> None:
        """Poll with `config` from now on: new tasks start, dropped ones are forgotten, kept ones keep their data.

        The old generation (its poller, pools and AWS clients) is stopped and released; the Store refuses its late
        results, so nothing a reload dropped can come back.
        """
        with self._reload_lock:
            for setting in ("server", "sinks", "mode", "otlp"):
                if getattr(config, setting) != getattr(self.config, setting):
                    log.warning("config reload: changes to %r take effect only after a restart", setting)
            # The new generation is built before the old one stops: if building failed, polling would go on as is.
            clients = AwsClients(config.aws, self.metrics, self._static_credentials, models_from=self.clients)
            poller = Poller(config, clients, self.store, self.metrics, self._clock, self._shard)
            old = self.poller
            old.stop()
            keys = {t.key for t in poller.tasks}
            poller.generation = self.store.new_generation(keys, prices(config.pricing))
            self._forget_dropped(old, keys)
            self.config, self.clients, self.poller = config, clients, poller
            if self._running:
                poller.start()
            self.metrics.prices = config.pricing.cloudwatch.per_metric_and_request
            gc.unfreeze()  # the replaced generation may be frozen, and is garbage now: collectable again
            self.metrics.reload_successful.set(1)
            self.metrics.reload_timestamp.set(self._clock())
            log.info("config reloaded: %d poll tasks", len(poller.tasks))

    def _forget_dropped(self, old: Poller, keys: set[TaskKey]) -> None:
        """Self-metric series of (account, region, namespace) the new configuration no longer polls go away."""
        accounts = {t.key: self.clients.known_account_id(t.target) for t in old.tasks}
        kept_tasks = {(accounts.get(k, ""), k.region, k.namespace) for k in keys}
        kept_regions = {(a, r) for a, r, _ in kept_tasks}

        def keep(account_id: str, region: str, namespace: str | None) -> bool:
            if namespace is None:
                return (account_id, region) in kept_regions or not account_id
            return (account_id, region, namespace) in kept_tasks or not account_id

        self.metrics.forget(keep)

    def stop(self) -> None:
        self._running = False
        self.metrics.stop_sampling()
        self.poller.stop()
        for sink in self.sinks.values():
            sink.stop()
        if self.server is not None:
            self.server.stop()
        gc.unfreeze()
