"""Reload (SIGHUP, POST /-/reload), TLS and basic auth from a web config file, request limits, and secrets."""

from __future__ import annotations

import base64
import http.client
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter.app import Exporter
from exporter.config import load_config_text
from exporter.demo.server import SimulatedAws
from tests.conftest import fast_config, free_port, put_values, run_cli, self_signed_certificate, wait_for
from tests.integration.test_jobs import recent

PENDING = "NumberOfRecordsPendingProcessing"
SERIES = "aws_bedrock_batch_number_of_records_pending_processing_maximum"


def config_text(aws: SimulatedAws, regions: str = "[us-east-1]", extra: str = "  enable_reload: true") -> str:
    """A config with POST /-/reload on (it is off by default); `extra` adds lines under `server:`."""
    return fast_config(aws.url, regions=regions, jobs=None, head=f"server:\n  listen_address: 127.0.0.1:0\n{extra}")


def body(url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        return str(response.read().decode())


def post(url: str, data: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(5)


def start_run(
    procs: list[subprocess.Popen[str]], config: Path, port: int, *options: str, env: dict[str, str] | None = None
) -> str:
    """`python -m exporter [OPTIONS] run --config CONFIG` on 127.0.0.1:PORT; returns its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            *options,
            "run",
            "--config",
            str(config),
            "--listen-address",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    procs.append(proc)
    return f"http://127.0.0.1:{port}"


def test_reload_applies_a_good_config_and_refuses_a_bad_one(
    fresh_aws: SimulatedAws, tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    put_values(fresh_aws, {(PENDING, "east"): 1.0}, when=recent())
    put_values(fresh_aws, {(PENDING, "west"): 2.0}, region="us-west-2", when=recent())
    config = tmp_path / "config.yaml"
    config.write_text(config_text(fresh_aws))
    url = start_run(running, config, free_port())
    wait_for(lambda: 'dimension_ModelId="east"' in _try(url + "/metrics"), timeout=20)
    assert 'dimension_ModelId="west"' not in body(url + "/metrics")
    # a second region, through POST /-/reload
    config.write_text(config_text(fresh_aws, "[us-east-1, us-west-2]"))
    assert post(url + "/-/reload") == (200, "config reloaded\n")
    wait_for(lambda: 'dimension_ModelId="west"' in body(url + "/metrics"), timeout=10)
    assert "bedrock_batch_exporter_config_last_reload_successful 1.0" in body(url + "/metrics")
    # a broken file is refused; the running config stays in force
    config.write_text(config_text(fresh_aws, "[us-east-1, nowhere]"))
    status, message = post(url + "/-/reload")
    assert status == 400 and "targets[0].regions" in message
    metrics = body(url + "/metrics")
    assert "bedrock_batch_exporter_config_last_reload_successful 0.0" in metrics
    assert 'dimension_ModelId="west"' in metrics and 'dimension_ModelId="east"' in metrics
    # back to one region, through SIGHUP: the dropped region's series go away
    config.write_text(config_text(fresh_aws))
    running[0].send_signal(signal.SIGHUP)
    wait_for(lambda: 'dimension_ModelId="west"' not in body(url + "/metrics"), timeout=10)
    assert "bedrock_batch_exporter_config_last_reload_successful 1.0" in body(url + "/metrics")
    running[0].send_signal(signal.SIGTERM)
    _, stderr = running[0].communicate(timeout=5)
    assert running[0].returncode == 0
    assert "config reload refused, keeping the running config: targets[0].regions" in stderr
    assert "received SIGHUP" in stderr and "Traceback" not in stderr


def _try(url: str) -> str:
    try:
        return body(url)
    except OSError:
        return ""


def test_reload_can_be_disabled_and_bodies_are_limited(fresh_aws: SimulatedAws) -> None:
    exporter = Exporter(
        load_config_text(config_text(fresh_aws, extra="  enable_reload: false"), env={}), config_path="unused.yaml"
    )
    url = exporter.start()
    try:
        assert post(url + "/-/reload")[0] == 405
        assert post(url + "/metrics")[0] == 405
    finally:
        exporter.stop()
    exporter = Exporter(load_config_text(config_text(fresh_aws), env={}), config_path="unused.yaml")
    url = exporter.start()
    try:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.putrequest("POST", "/-/reload")
        conn.putheader("Content-Length", str(10 * 1024 * 1024))
        conn.endheaders()
        assert conn.getresponse().status == 413  # refused before the body is read
        conn.close()
    finally:
        exporter.stop()


def test_tls_and_basic_auth(fresh_aws: SimulatedAws, tmp_path: Path) -> None:
    cert_file, key_file = self_signed_certificate(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret-scrape-password", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert_file}\n  key_file: {key_file}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    config = config_text(fresh_aws, extra=f"  web_config_file: {web}")
    exporter = Exporter(load_config_text(config, env={}))
    url = exporter.start().replace("127.0.0.1", "localhost")
    assert url.startswith("https://")
    context = ssl.create_default_context(cafile=str(cert_file))
    good = {"Authorization": "Basic " + base64.b64encode(b"prometheus:s3cret-scrape-password").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"prometheus:guess").decode()}
    try:
        assert "bedrock_batch_exporter_build_info" in body(url + "/metrics", good, context)
        for headers in ({}, bad, {"Authorization": "Basic !!!"}, {"Authorization": "Bearer x"}):
            with pytest.raises(urllib.error.HTTPError) as info:
                body(url + "/healthz", headers, context)
            assert info.value.code == 401 and "Basic" in info.value.headers["WWW-Authenticate"]
        with pytest.raises(OSError):  # plain HTTP to the TLS port gets nothing useful
            body(url.replace("https://", "http://") + "/healthz", good)
        for _ in range(20):  # verified credentials are remembered: bcrypt runs once, not per scrape
            body(url + "/healthz", good, context)
    finally:
        exporter.stop()


def test_bad_web_config_exits_2_with_one_line(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: plain-text-password\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"server: {{web_config_file: {web}}}\ntargets: [{{regions: [us-east-1], account_id: "
        f"'000000000000', endpoint_url: 'http://127.0.0.1:9'}}]\n"
    )
    result = run_cli("run", "--config", str(config), "--listen-address", f"127.0.0.1:{free_port()}", timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "must be a bcrypt hash" in lines[0] and "basic_auth_users" in lines[0]
    assert "plain-text-password" not in result.stderr


def test_secrets_never_reach_logs_or_endpoints(
    fresh_aws: SimulatedAws, tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    secrets = {
        "aws secret key": "aws-secret-9f8e7d6c5b4a",
        "aws session token": "aws-session-token-1a2b3c4d",
        "otlp header": "otlp-bearer-5e6f7a8b9c",
        "scrape password": "scrape-password-0d1e2f3a",
    }
    put_values(fresh_aws, {(PENDING, "m"): 1.0}, when=recent())
    hashed = bcrypt.hashpw(secrets["scrape password"].encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        config_text(fresh_aws, extra=f"  enable_reload: true\n  web_config_file: {web}").replace(
            "\ntargets:",
            "\nmode: both\notlp:\n"
            "  endpoint: http://127.0.0.1:9\n  interval: 1s\n  timeout: 500ms\n"
            "  headers: {authorization: 'Bearer ${OTLP_TOKEN}'}\ntargets:",
        )
    )
    env = {
        "AWS_SECRET_ACCESS_KEY": secrets["aws secret key"],
        "AWS_SESSION_TOKEN": secrets["aws session token"],
        "OTLP_TOKEN": secrets["otlp header"],
    }
    url = start_run(running, config, free_port(), "--log-level", "debug", env=env)
    proc = running[-1]
    auth = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{secrets['scrape password']}".encode()).decode()}
    wait_for(
        lambda: (
            "otlp_export_failures_total 1" in _try_auth(url + "/metrics", auth)
            or "otlp_export_failures_total 2" in _try_auth(url + "/metrics", auth)
        ),
        timeout=20,
    )
    seen = [body(url + path, auth) for path in ("/metrics", "/api/status", "/")]
    seen.append(post(url + "/-/reload", headers=auth)[1])
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=5)
    seen += [stdout, stderr]
    assert "otlp" in stderr.lower()  # the failing pushes were logged...
    for what, secret in secrets.items():
        assert not any(secret in text for text in seen), f"the {what} leaked"


def _try_auth(url: str, headers: dict[str, str]) -> str:
    try:
        return body(url, headers)
    except OSError:
        return ""
