"""Credentials in an `endpoint_url` (http://user:pass@host) never reach logs, `/` or `/api/status` (issue 15)."""

from __future__ import annotations

import logging
import urllib.request

import pytest

from exporter.app import Exporter
from exporter.demo.server import SimulatedAws
from exporter.errors import describe, redact_url
from tests.conftest import fast_config, free_port, start_exporter, wait_for

SECRET = "s3cr3t-Pa55"
USER = "alice-the-user"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_redact_url_removes_user_info_only() -> None:
    text = f'Could not connect to the endpoint URL: "http://{USER}:{SECRET}@127.0.0.1:9/" and https://h/p?a=b@c'
    assert redact_url(text) == 'Could not connect to the endpoint URL: "http://127.0.0.1:9/" and https://h/p?a=b@c'
    assert redact_url(f"HTTPS://{USER}:p@ss@host:1/") == "HTTPS://host:1/"  # urlsplit splits at the last "@"


def test_describe_redacts_every_kind_of_error() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    url = f"http://{USER}:{SECRET}@127.0.0.1:9/"
    for exc in (
        EndpointConnectionError(endpoint_url=url),
        ValueError(f"Invalid endpoint: {url}"),
        ClientError({"Error": {"Code": "X", "Message": f"bad {url}"}}, "GetMetricData"),
    ):
        text = describe(exc)
        assert SECRET not in text and USER not in text and "127.0.0.1:9" in text, text


def test_config_refuses_credentials_in_endpoint_url() -> None:
    """The first line of defence is the config check (exporter/config.py); the rest of this file is the second."""
    from exporter.config import ConfigError, load_config_text

    with pytest.raises(ConfigError) as caught:
        load_config_text(fast_config(f"http://{USER}:{SECRET}@127.0.0.1:9"), env={})
    assert SECRET not in str(caught.value) and USER not in str(caught.value)


def test_endpoint_credentials_from_the_environment_stay_out_of_logs_and_status(
    fresh_aws: SimulatedAws,
    exporters: list[Exporter],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An endpoint with user info can still reach botocore past the config check: AWS_ENDPOINT_URL (botocore's
    service-specific endpoints). The errors it causes are shown and logged without it."""
    port = free_port()  # nothing listens: the error names the URL
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{USER}:{SECRET}@127.0.0.1:{port}")
    targets = '  - name: env\n    regions: [us-east-1]\n    account_id: "111111111111"\n'
    caplog.set_level(logging.INFO)  # the default level (botocore's own DEBUG lines repeat the URL as configured)
    _, url = start_exporter(
        exporters,
        fast_config(
            fresh_aws.url, targets=targets, aws="max_attempts: 1, read_timeout: 1s, connect_timeout: 1s", jobs=None
        ),
    )
    # the connection error is on the status page (so the check below is not vacuous), its URL without user info
    wait_for(lambda: f"127.0.0.1:{port}" in fetch(url + "/api/status"), timeout=20, what="the error on /api/status")
    pages = {path: fetch(url + path) for path in ("/", "/api/status", "/metrics")}
    for path, text in pages.items():
        assert SECRET not in text and USER not in text, f"credentials on {path}"
    assert f"127.0.0.1:{port}" in pages["/"]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"127.0.0.1:{port}" in logged  # the failure was logged...
    assert SECRET not in logged and USER not in logged  # ...without the credentials


def test_user_info_never_reaches_botocore(aws: SimulatedAws, caplog: pytest.LogCaptureFixture) -> None:
    """Should a target's endpoint_url carry user info (the config check refuses it), the client is built without
    it, so not even botocore's DEBUG logs or exceptions can repeat it."""
    from exporter.aws.session import AwsClients
    from exporter.config import AwsConfig, TargetConfig

    target = TargetConfig.model_construct(  # past the config check on purpose
        name="t",
        account_id="000000000000",
        regions=("us-east-1",),
        role_arn=None,
        external_id=None,
        endpoint_url=aws.url.replace("http://", f"http://{USER}:{SECRET}@"),
        namespaces=None,
    )
    caplog.set_level(logging.DEBUG)
    client = AwsClients(AwsConfig()).client("cloudwatch", target, "us-east-1")
    assert client.meta.endpoint_url == aws.url
    client.list_metrics(Namespace="AWS/Bedrock/Batch")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert SECRET not in logged and USER not in logged
    assert "user info in endpoint_url is ignored" in logged
