"""The alarm-to-notification path: demo -> Prometheus (our rules) -> Alertmanager (our example config) -> webhook;
and the example config itself: valid for amtool, secrets only in files, every alert routed to the promised receiver.

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


# Fields that would carry a secret in the file itself; Alertmanager reads each from a `*_file` sibling instead.
SECRET_FIELDS = {
    "api_url",
    "auth_password",
    "auth_secret",
    "access_key",
    "secret_key",
    "bot_token",
    "routing_key",
    "service_key",
    "api_key",
    "password",
    "credentials",
    "url",
}
# What the example promises: critical pages on-call (SNS), the embeddings models' owner gets their alerts, warnings go
# to the team's Slack, info by e-mail. Written from the comments of alertmanager.yml, not read from its routes.
MODELS = ("anthropic.claude-3-5-sonnet-20240620-v1:0", "amazon.titan-embed-text-v2:0")


def expected_receiver(severity: str, model_id: str | None) -> str:
    if severity == "critical":
        return "oncall"
    if model_id is not None and model_id.startswith("amazon.titan-embed-"):
        return "embeddings-team"
    return {"info": "team-email", "warning": "team"}[severity]


def test_example_config_is_valid(tmp_path: Path) -> None:
    result = run(binary("amtool"), "check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    # check-config is strict: a misspelt field fails it (so the check above can fail too).
    broken = tmp_path / "broken.yml"
    broken.write_text(EXAMPLE.read_text().replace("api_url_file:", "api_url_fil:", 1))
    assert run(binary("amtool"), "check-config", str(broken)).returncode != 0


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for key, value in node.items() for item in _walk(value, f"{path}.{key}")] + [
            (f"{path}.{key}", value) for key, value in node.items()
        ]
    if isinstance(node, list):
        return [item for i, value in enumerate(node) for item in _walk(value, f"{path}[{i}]")]
    return []


def test_example_receivers_are_slack_email_and_sns_with_secrets_in_files() -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    kinds = {key for receiver in config["receivers"] for key in receiver if key.endswith("_configs")}
    assert kinds == {"slack_configs", "email_configs", "sns_configs"}
    for where, _ in _walk(config):
        assert where.rsplit(".", 1)[-1] not in SECRET_FIELDS, f"{where}: a secret field in the file; use its *_file"
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert slack["api_url_file"].startswith("/"), receiver["name"]
            assert "runbook_url" in slack["text"], receiver["name"]
        for email in receiver.get("email_configs", []):
            assert email["auth_password_file"].startswith("/"), receiver["name"]
        for sns in receiver.get("sns_configs", []):
            # No keys: the AWS SDK's default credential chain signs the request.
            assert set(sns["sigv4"]) == {"region"}, receiver["name"]
            assert sns["topic_arn"].startswith("arn:aws:sns:"), receiver["name"]


def routes_test(labels: dict[str, str]) -> list[str]:
    """The receivers `amtool config routes test` resolves the labels to, in routing-tree order."""
    args = [f"{name}={value}" for name, value in labels.items()]
    result = run(binary("amtool"), "config", "routes", "test", f"--config.file={EXAMPLE}", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


def test_every_alert_reaches_the_receiver_the_example_promises() -> None:
    reached: dict[str, set[str]] = {}
    for rule in alerting_rules():
        severity = rule["labels"]["severity"]
        # Alerts about a model carry model_id (their text names it); the exporter's own alerts do not.
        per_model = "$labels.model_id" in " ".join(rule["annotations"].values())
        for model_id in MODELS if per_model else (None,):
            labels = {"alertname": rule["alert"], "severity": severity}
            if model_id is not None:
                labels.update(model_id=model_id, account_id="111111111111", region="us-east-1")
            got = routes_test(labels)
            want = expected_receiver(severity, model_id)
            assert got == [want], f"{labels} reaches {got}, expected {want}"
            reached.setdefault(want, set()).add(rule["alert"])
            print(f"{rule['alert']:40} {severity:8} {model_id or '-':45} -> {got[0]}")
    receivers = {r["name"] for r in yaml.safe_load(EXAMPLE.read_text())["receivers"]}
    assert set(reached) == receivers, f"receivers no alert reaches: {receivers - set(reached)}"


def _test_alertmanager_config(webhook: str) -> dict[str, Any]:
    """The example's routing, grouping and inhibition with short timers; each receiver posts to the test's webhook.

    Slack, e-mail and SNS cannot be reached from a test, so each receiver's integrations are replaced by one webhook
    whose path names the receiver: the notification's path says which receiver the routing tree chose.
    """
    config = yaml.safe_load(EXAMPLE.read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": f"{webhook}/{r['name']}", "send_resolved": True}]}
        for r in config["receivers"]
    ]
    return config


def _fast_throughput_rule() -> dict[str, Any]:
    rule = dict(next(r for r in alerting_rules() if r["alert"] == ALERT))
    expr = rule["expr"].replace("[6h]", "[10s]").replace("> 1000000", "> 100000").replace("offset 5h55m", "offset 5s")
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
        alert = firing["alerts"][0]
        # The receiver the routing tree chose is the one amtool names for these labels.
        assert path == "/" + expected_receiver(alert["labels"]["severity"], alert["labels"]["model_id"])
        assert [path[1:]] == routes_test(alert["labels"])
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
