"""The image, built and run: a Python base made from Debian's packages (mmdebstrap), the Dockerfile built with podman,
the container run read-only as its non-root user against the simulated AWS, scraped, and its HEALTHCHECK run.

How this machine builds images (no Docker engine, root without CAP_SYS_RESOURCE, a hybrid cgroup layout, no image
registry): ../shared/IMAGE-BUILD.md, as facts. Everything podman keeps (configuration, storage, images) lives in the
test's own folder and is removed after. The base and the build fetch Debian's packages and PyPI's wheels; nothing else
leaves the machine, and the running container talks only to the host's loopback (slirp4netns' 10.0.2.2).
Skipped, with the reason, where the tools cannot run (not root, podman or mmdebstrap missing).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.demo.server import SimulatedAws
from tests.conftest import free_port, wait_for
from tests.e2e.k8s_tools import REPO

pytestmark = pytest.mark.e2e

TOOLS = ("podman", "runc", "mmdebstrap", "slirp4netns")
BASE = "localhost/bedrock-batch-exporter-base:test"
IMAGE = "localhost/bedrock-batch-exporter:test"
MAX_IMAGE_BYTES = 400 * 1024 * 1024  # measured 308 MB on a Debian 12 base (Python 3.11)
LOCAL_CAS = Path("/usr/local/share/ca-certificates")  # a TLS-intercepting proxy's CA, where the host keeps one
STEP_TIMEOUT = 600


class Podman:
    """podman with the test's own containers.conf and storage, every call bounded."""

    def __init__(self, home: Path) -> None:
        hard_files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        hard_procs = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        procs = 32768 if hard_procs == resource.RLIM_INFINITY else min(hard_procs, 32768)
        (home / "containers.conf").write_text(
            f'[containers]\ndefault_ulimits = ["nofile={hard_files}:{hard_files}", "nproc={procs}:{procs}"]\n'
            '[engine]\nruntime = "runc"\n'  # crun refuses this host's hybrid cgroup layout
        )
        (home / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\nrunroot = "{home / "run"}"\ngraphroot = "{home / "graph"}"\n'
        )
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(home / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(home / "storage.conf"),
        }

    def __call__(self, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=self.env, cwd=cwd, timeout=STEP_TIMEOUT, check=False
        )
        if check and done.returncode != 0:
            pytest.fail(f"podman {' '.join(args[:3])} ... exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done


def _why_not() -> str | None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)}: apt-get install -y --no-install-recommends {' '.join(missing)}"
    if os.geteuid() != 0:
        return "needs root: rootless podman needs subordinate uid ranges, which this machine does not set up"
    return None


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("podman")
    tool = Podman(home)
    try:
        yield tool
    finally:
        tool("rm", "--all", "--force", check=False)
        tool("rmi", "--all", "--force", check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Dockerfile built on a base of Debian 12's python3; returns `podman image inspect` of it."""
    work = tmp_path_factory.mktemp("image")
    hook = (
        f'if [ -d {LOCAL_CAS} ]; then mkdir -p "$1{LOCAL_CAS}" && cp -r {LOCAL_CAS}/. "$1{LOCAL_CAS}/" '
        '&& chroot "$1" update-ca-certificates >/dev/null; fi'
    )
    base = work / "base.tar"
    made = subprocess.run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates",
            f"--customize-hook={hook}",
            "bookworm",
            str(base),
        ],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    assert made.returncode == 0, f"mmdebstrap failed:\n{made.stderr[-3000:]}"
    podman("import", str(base), BASE)
    base.unlink()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    podman(
        "build",
        "--format=docker",  # the OCI format drops HEALTHCHECK
        "--network=host",
        f"--build-arg=PYTHON_IMAGE={BASE}",
        f"--build-arg=VERSION={version}",
        f"--build-arg=REVISION={revision}",
        f"--tag={IMAGE}",
        str(REPO),
    )
    (inspected,) = json.loads(podman("image", "inspect", IMAGE).stdout)
    inspected["project_version"], inspected["git_revision"] = version, revision
    return dict(inspected)


def test_the_image_is_labelled_small_and_runs_as_the_non_root_user(image: dict[str, Any]) -> None:
    labels = image["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "bedrock-batch-exporter"
    assert labels["org.opencontainers.image.version"] == image["project_version"]
    assert labels["org.opencontainers.image.revision"] == image["git_revision"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert image["Config"]["User"] == "65532:65532"
    assert image["Size"] < MAX_IMAGE_BYTES, f"{image['Size'] / 1e6:.0f} MB"
    healthcheck = image.get("Healthcheck") or image["Config"].get("Healthcheck")  # where podman's version keeps it
    assert healthcheck["Test"][:2] == ["CMD", "python"]
    assert "MALLOC_ARENA_MAX=2" in image["Config"]["Env"]


def test_the_container_serves_metrics_read_only_and_is_healthy(
    image: dict[str, Any], podman: Podman, aws: SimulatedAws, tmp_path: Path
) -> None:
    port = free_port()
    aws_port = aws.url.rsplit(":", 1)[1]
    config = tmp_path / "config.yaml"
    # test fixture account; the container reaches the host's loopback as 10.0.2.2 (slirp4netns)
    config.write_text(
        'targets:\n  - name: sim\n    account_id: "123456789012"\n    regions: [us-east-1]\n'
        f"    endpoint_url: http://10.0.2.2:{aws_port}\n"
    )
    config.chmod(0o644)
    podman(
        "run",
        "--detach",
        "--name=bbe-image-test",
        "--read-only",
        "--read-only-tmpfs=false",  # as strict as docker --read-only
        "--network=slirp4netns:allow_host_loopback=true",
        f"--publish=127.0.0.1:{port}:9816",
        "--env=AWS_ACCESS_KEY_ID=testing",
        "--env=AWS_SECRET_ACCESS_KEY=testing",
        f"--volume={config}:/etc/bedrock-batch-exporter/config.yaml:ro",
        IMAGE,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as answer:  # loopback only
                    return answer.status == 200
            except OSError:
                return False

        wait_for(ready, timeout=60, what="the container answering /readyz")
        with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:  # loopback only
            body = answer.read().decode()
        # the job collector's task has read the simulated AWS from inside the container
        assert (
            'bedrock_batch_exporter_up{account_id="123456789012",namespace="bedrock:jobs",region="us-east-1"} 1.0'
            in body
        )
        assert podman("healthcheck", "run", "bbe-image-test", check=False).returncode == 0
        assert podman("exec", "bbe-image-test", "id", "-u").stdout.strip() == "65532"
        written = podman("exec", "bbe-image-test", "touch", "/probe", check=False)
        assert written.returncode != 0 and "Read-only file system" in written.stderr
    finally:
        podman("rm", "--force", "bbe-image-test", check=False)
