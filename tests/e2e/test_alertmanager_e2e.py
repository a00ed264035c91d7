"""The alarm-to-notification path: demo -> Prometheus (our rules) -> Alertmanager (our example config) -> webhook.

The demo is driven into the AWS blog's condition (sustained high input-token throughput) with the test's threshold and
window shortened by editing the alert's literals, as docs/alerts.md describes; the notification must name the model
and link the runbook, and the resolved notification must follow once the condition clears.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port
from tests.e2e.prom_server import Process, poll, ready, start_demo, start_prometheus
from tests.e2e.prom_tools import RULES_FILE, alerting_rules, binary, run

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERT = "BedrockBatchHighInputTokenThroughput"


class Webhook:
    """Records every notification Alertmanager posts."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook._lock:
                    hook.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, status: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            for path, payload in self.received:
                if payload.get("status") == status and payload["commonLabels"].get("alertname") == ALERT:
                    return path, payload
        return None


def test_example_config_is_valid() -> None:
    result = run(binary("amtool"), "check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr


def _test_alertmanager_config(webhook: str) -> dict[str, Any]:
    """The example config with short timers and its webhooks pointed at the test's receiver."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook + "/" + receiver["name"]
    return config


def _fast_throughput_rule() -> dict[str, Any]:
    rule = dict(next(r for r in alerting_rules() if r["alert"] == ALERT))
    expr = rule["expr"].replace("[6h]", "[10s]").replace("> 1000000", "> 100000")
    assert expr != rule["expr"], "the alert's literals changed: update this test and docs/alerts.md"
    rule.update(expr=expr, **{"for": "2s"})
    return {"groups": [{"name": "e2e-fast", "rules": [rule]}]}


def test_alert_fires_is_delivered_and_resolves(tmp_path: Path) -> None:
    workdir = tmp_path
    alertmanager_binary = binary("prometheus-alertmanager")
    webhook = Webhook()
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(_test_alertmanager_config(webhook.url)))
    # only the fast copy of the alert, plus the recording rules it reads
    recording = {"groups": [g for g in yaml.safe_load(RULES_FILE.read_text())["groups"] if "alerts" not in g["name"]]}
    (workdir / "recording.rules.yaml").write_text(yaml.safe_dump(recording))
    (workdir / "fast.rules.yaml").write_text(yaml.safe_dump(_fast_throughput_rule()))
    am_port = free_port()
    alertmanager = Process(
        [
            alertmanager_binary,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        workdir / "alertmanager.log",
    )
    demo, target = start_demo(workdir, duration=240)
    prometheus = None
    try:
        prometheus, base = start_prometheus(
            binary("prometheus"),
            workdir,
            target,
            [workdir / "recording.rules.yaml", workdir / "fast.rules.yaml"],
            alertmanager=f"127.0.0.1:{am_port}",
        )
        started = time.monotonic()
        poll(lambda: ready(base) or not prometheus.alive(), 30, "Prometheus ready")
        assert prometheus.alive(), prometheus.tail()
        assert alertmanager.alive(), alertmanager.tail()
        path, firing = poll(lambda: webhook.find("firing"), 60, "firing notification at the webhook")
        fired_after = time.monotonic() - started
        assert path == "/team"  # severity=warning routes to the team receiver
        alert = firing["alerts"][0]
        assert alert["labels"]["model_id"], alert
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["runbook_url"].endswith("/runbooks#bedrockbatchhighinputtokenthroughput")
        assert alert["labels"]["model_id"] in alert["annotations"]["summary"]
        assert firing["groupLabels"].keys() == {"alertname", "model_id"}  # grouped per model
        # the condition clears: the demo stops, its series go stale, the alert resolves
        demo.stop()
        cleared = time.monotonic()
        _, resolved = poll(lambda: webhook.find("resolved"), 90, "resolved notification at the webhook")
        assert resolved["alerts"][0]["status"] == "resolved"
        print(
            f"firing delivered {fired_after:.1f}s after Prometheus started; "
            f"resolved delivered {time.monotonic() - cleared:.1f}s after the condition cleared"
        )
    finally:
        demo.stop()
        if prometheus is not None:
            prometheus.stop()
        alertmanager.stop()
        webhook.server.shutdown()
