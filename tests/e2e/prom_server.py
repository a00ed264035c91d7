"""Processes for the e2e tests: the exporter demo and a real Prometheus, on free 127.0.0.1 ports, always stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from tests.conftest import free_port, wait_for


class Process:
    """A child process in its own session, with its output in a log file; `stop()` ends it and its children."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._out: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()


def start_demo(workdir: Path, duration: int = 300) -> tuple[Process, str]:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "exporter",
        "demo",
        "--listen-address",
        f"127.0.0.1:{port}",
        "--duration",
        str(duration),
    ]
    return Process(args, workdir / "demo.log"), f"127.0.0.1:{port}"


def start_prometheus(
    binary: str,
    workdir: Path,
    target: str,
    rule_files: list[Path],
    alertmanager: str | None = None,
    interval: int = 1,
) -> tuple[Process, str]:
    port = free_port()
    every = f"{interval}s"
    config: dict[str, Any] = {
        "global": {"scrape_interval": every, "evaluation_interval": every, "scrape_timeout": every},
        "rule_files": [str(p) for p in rule_files],
        # the job name the BedrockBatchExporterDown alert expects
        "scrape_configs": [{"job_name": "bedrock-batch-exporter", "static_configs": [{"targets": [target]}]}],
    }
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    args = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return Process(args, workdir / "prometheus.log"), f"http://127.0.0.1:{port}"


def api(base: str, path: str, **params: str) -> Any:
    """GET a Prometheus HTTP API path; returns the decoded `data`, raises with Prometheus' error text."""
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}") from exc
    if body.get("status") != "success":
        raise PromQLError(f"{path} {params}: {body}")
    return body["data"]


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def poll(condition: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll `condition` until truthy or fail with a message naming `what`."""
    return wait_for(condition, timeout, interval, what)


class PromQLError(Exception):
    pass
