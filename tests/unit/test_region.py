"""Region resolution as an AWS user expects: AWS_REGION, AWS_DEFAULT_REGION, the profile, instance metadata.

Instance metadata is a 127.0.0.1 server started here (IMDSv2: PUT /latest/api/token, then GET the availability zone,
as the EC2 user guide describes); the real metadata service is never reached.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from exporter.aws.region import FoundRegion, find_credentials, find_region


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_EC2_METADATA_SERVICE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.fixture
def imds() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self._answer(b"token-1" if self.path == "/latest/api/token" else None)

        def do_GET(self) -> None:
            ok = self.path.startswith("/latest/meta-data/placement/availability-zone")
            self._answer(b"eu-central-1b" if ok and self.headers.get("X-aws-ec2-metadata-token") == "token-1" else None)

        def _answer(self, body: bytes | None) -> None:
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_aws_region_comes_first(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("AWS_REGION", "eu-west-1")
    clean.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert find_region() == FoundRegion("eu-west-1", "AWS_REGION")


def test_then_aws_default_region(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("AWS_REGION", "  ")  # blank counts as unset
    clean.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert find_region() == FoundRegion("us-west-2", "AWS_DEFAULT_REGION")


def test_then_the_profile(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\nregion = ap-south-1\n[profile team]\nregion = sa-east-1\n")
    clean.setenv("AWS_CONFIG_FILE", str(config))
    assert find_region() == FoundRegion("ap-south-1", "the AWS config file (profile default)")
    clean.setenv("AWS_PROFILE", "team")
    assert find_region() == FoundRegion("sa-east-1", "the AWS config file (profile team)")
    clean.setenv("AWS_PROFILE", "missing")  # a profile the file lacks: no region from it, no exception
    assert find_region() is None


def test_then_instance_metadata(clean: pytest.MonkeyPatch, imds: str) -> None:
    assert find_region() is None  # disabled: not asked
    clean.setenv("AWS_EC2_METADATA_DISABLED", "false")
    clean.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
    assert find_region() == FoundRegion("eu-central-1", "instance metadata")


def test_no_instance_metadata_answers_none_quickly(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("AWS_EC2_METADATA_DISABLED", "false")
    clean.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    assert find_region() is None


def test_credential_source_names_the_chain_step_not_the_keys(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    clean.setenv("AWS_SECRET_ACCESS_KEY", "unit-secret-value")
    found = find_credentials()
    assert found is not None and found.method == "env" and "AWS_ACCESS_KEY_ID" in found.description
    assert "unit-secret-value" not in repr(found)
