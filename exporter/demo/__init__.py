"""`bedrock-batch-exporter demo`: the exporter polling an embedded, simulated AWS with a live Bedrock workload."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.config import Config, load_config_text

log = logging.getLogger(__name__)

DEMO_CREDENTIALS = ("demo-access-key", "demo-secret-key")  # moto accepts any key; these never leave loopback
# One datapoint per model per period, as Bedrock publishes one per model per minute: with several per period the
# Sum statistic the throughput rules read would count the per-minute rate several times (docs/alerts.md).
PUBLISH_EVERY = 10.0  # = the demo config's period
HISTORY_STEPS = 30
KEEP_HISTORY = 3600.0

# High-resolution 10s periods keep the demo lively; real Bedrock batch metrics arrive once a minute (see
# config.example.yaml for production settings).
DEMO_CONFIG = """
targets:
  - name: demo
    endpoint_url: {endpoint}
    regions: [us-east-1, us-west-2]
namespaces:
  - namespace: AWS/Bedrock/Batch
    interval: 5s
    period: 10s
    length: 60s
    delay: 0s
    discovery:
      refresh_interval: 30s
jobs:
  interval: 5s
  retention: 10m
  lookback: 8d
  eta_window: 1m
  tag_labels: [team]
"""


# With --otlp-endpoint the demo pushes as well as serving /metrics, every 5s so a receiver sees changes quickly.
DEMO_OTLP_CONFIG = """
mode: both
otlp:
  endpoint: {otlp_endpoint}
  interval: 5s
"""


def demo_config(endpoint: str, otlp_endpoint: str | None = None) -> Config:
    from exporter.config import JobsConfig

    text = DEMO_CONFIG.format(endpoint=endpoint)
    if "read_manifests" in JobsConfig.model_fields:  # the simulated jobs write manifests: show exact job costs
        text = text.replace("  lookback: 8d\n", "  lookback: 8d\n  read_manifests: true\n")
    if otlp_endpoint:
        text += DEMO_OTLP_CONFIG.format(otlp_endpoint=otlp_endpoint)
    return load_config_text(text, "<demo config>")


def _prune(region: str, cutoff: datetime) -> None:
    """Forget simulated datapoints older than `cutoff`, so a long-running demo keeps flat memory."""
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.models import DEFAULT_ACCOUNT_ID

    backend = cloudwatch_backends[DEFAULT_ACCOUNT_ID][region]
    naive_cutoff = cutoff.astimezone(UTC).replace(tzinfo=None)  # moto keeps some timestamps naive (UTC)
    backend.metric_data[:] = [
        m for m in backend.metric_data if m.timestamp >= (cutoff if m.timestamp.tzinfo else naive_cutoff)
    ]


class DemoWorld:
    """The simulated AWS with its live workload (and, once started, the exporter polling it): the demo's parts, for
    `run_demo` and for benchmarks that score the exporter's conclusions against the simulation's own log."""

    def __init__(self, policy: str = "fifo") -> None:
        # Imported here: moto is the optional `demo` extra, and a missing one is a clean error in run_demo.
        import boto3

        from exporter.demo.server import SimulatedAws
        from exporter.demo.workload import Workload, default_models

        self.aws = SimulatedAws().start()
        self.exporter: Any = None
        self.models = default_models()

        def client(service: str, region: str) -> Any:
            return boto3.client(
                service,
                region_name=region,
                endpoint_url=self.aws.url,
                aws_access_key_id=DEMO_CREDENTIALS[0],
                aws_secret_access_key=DEMO_CREDENTIALS[1],
            )

        clients = {region: client("cloudwatch", region) for region in self.models}
        self.workload = Workload(clients, self.models, self.aws.jobs, s3=client("s3", "us-east-1"), policy=policy)
        self._last_prune = time.monotonic()
        self._apply_quotas()

    def _apply_quotas(self) -> None:
        """The simulation's concurrency of each model is its quota: a model below the default one gets an applied
        value (as an account whose quota was lowered), the others keep the default (the same number)."""
        from moto.iam.models import get_account_id_from

        from exporter.demo.quotas import CATALOGUE, DEFAULT_CONCURRENCY

        names = {model_id: name for model_id, name, _, _ in CATALOGUE}
        account = get_account_id_from(DEMO_CREDENTIALS[0])
        for region, models in self.models.items():
            for model in models:
                if model.concurrency != DEFAULT_CONCURRENCY:
                    self.aws.quotas.apply(account, region, names[model.model_id], float(model.concurrency))

    def history(self, expiring_job: bool = True, full_quota: bool = True) -> None:
        """Some minutes of past work, so the first poll already finds data and jobs."""
        start = datetime.now(UTC)
        history = start - timedelta(seconds=HISTORY_STEPS * PUBLISH_EVERY)
        llama = self.models["us-east-1"][2]
        if expiring_job:
            # A job that has run for almost its whole 24h timeout on a busy model: its timeout ends it during the
            # demo (PartiallyCompleted), and BedrockBatchJobAtRiskOfExpiring warns about it first.
            self.workload.submit(llama, (history - timedelta(hours=24, minutes=-6)).timestamp(), 20000, 24)
        if full_quota:
            # A long job beside it: the two hold both of the model's slots (its quota of 2), so the jobs arriving
            # behind them wait in Scheduled and BedrockBatchQuotaSaturated has a cause; when the first ends, the next
            # waiting job takes its slot.
            self.workload.submit(llama, (history - timedelta(hours=2)).timestamp(), 80000, 72)
        for step in range(HISTORY_STEPS):
            self.workload.step(PUBLISH_EVERY, history + timedelta(seconds=step * PUBLISH_EVERY))

    def start_exporter(self, listen_address: str, config: Config) -> str:
        from exporter.app import Exporter

        self.exporter = Exporter(config, static_credentials=DEMO_CREDENTIALS)
        url: str = self.exporter.start(listen_address)
        return url

    def step(self) -> None:
        """One PUBLISH_EVERY step of the workload at the current time; prunes old data once a minute."""
        self.workload.step(PUBLISH_EVERY)
        if time.monotonic() - self._last_prune > 60:
            cutoff = datetime.now(UTC) - timedelta(seconds=KEEP_HISTORY)
            for region in self.models:
                _prune(region, cutoff)
            self.aws.jobs.prune(cutoff)
            self.workload.prune(cutoff.timestamp())
            self._last_prune = time.monotonic()

    def stop(self) -> None:
        if self.exporter is not None:
            self.exporter.stop()
        self.aws.stop()


def run_demo(
    listen_address: str,
    stop: threading.Event,
    max_seconds: float | None = None,
    otlp_endpoint: str | None = None,
    *,
    policy: str = "fifo",
    unreadable_regions: tuple[str, ...] = (),
) -> int:
    """Serve the demo until `stop` is set (or `max_seconds` pass); returns an exit code."""
    try:
        world = DemoWorld(policy)
    except ImportError as exc:
        log.error("the demo needs moto: pip install 'bedrock-batch-exporter[demo]' (%s)", exc)
        return 2
    try:
        world.aws.broken_regions.update(unreadable_regions)
        world.history()
        try:
            url = world.start_exporter(listen_address, demo_config(world.aws.url, otlp_endpoint))
        except (OSError, ValueError) as exc:
            log.error("cannot listen on %s: %s", listen_address, exc)
            return 2
        log.info(
            "demo running: simulated AWS at %s; open %s/ (status page) or %s/metrics (Ctrl-C stops)",
            world.aws.url,
            url,
            url,
        )
        if unreadable_regions:
            log.info("fault: the exporter's calls to %s fail; the simulation goes on", ", ".join(unreadable_regions))
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        while not stop.wait(PUBLISH_EVERY):
            world.step()
            if deadline is not None and time.monotonic() >= deadline:
                break
        return 0
    finally:
        world.stop()
