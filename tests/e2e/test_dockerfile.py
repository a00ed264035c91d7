"""The Dockerfile, read rather than built (no container engine here): its stages, user, ports, entrypoint, labels.

The wheel build is real: the files the build stage copies (filtered by .dockerignore) go into a temporary directory
and `pip wheel --no-deps .` runs there, as in the image's first stage.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from exporter.config import ServerConfig
from tests.conftest import self_signed_certificate
from tests.e2e.k8s_tools import CHART, REPO, check_config, parse_cli

pytestmark = pytest.mark.e2e

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CONFIG_PATH = "/etc/bedrock-batch-exporter/config.yaml"
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|make|build-essential|pip wheel|setuptools|python3-dev)\b")


@dataclass
class Instruction:
    keyword: str
    value: str

    def flags_and_rest(self) -> tuple[dict[str, str], str]:
        """Leading --flag=value options (COPY --from=..., RUN --mount=...) and the rest."""
        flags: dict[str, str] = {}
        rest = self.value
        while match := re.match(r"--([\w-]+)(?:=(\S+))?\s+", rest):
            flags[match.group(1)] = match.group(2) or ""
            rest = rest[match.end() :]
        return flags, rest

    def exec_form(self) -> list[str]:
        value = json.loads(self.value)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def pairs(self, keyword: str) -> dict[str, str]:
        """The key=value pairs of every ENV or LABEL instruction of the stage."""
        pairs: dict[str, str] = {}
        for instruction in self.all(keyword):
            for token in shlex.split(instruction.value):
                key, _, value = token.partition("=")
                pairs[key] = value
        return pairs

    def env(self) -> dict[str, str]:
        return self.pairs("ENV")

    def labels(self) -> dict[str, str]:
        return self.pairs("LABEL")


def logical_lines(text: str) -> Iterator[str]:
    """Instructions with their `\\` continuations joined and comment lines dropped, as Docker reads them."""
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            yield current.strip()
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with FROM's ${ARG} references resolved."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "ARG" and not stages:
            arg, _, default = value.partition("=")
            global_args[arg] = default
        elif keyword == "FROM":
            parts = value.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args[m.group(1)], parts[0])
            stage_name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=stage_name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, value))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    _, parsed = parse_dockerfile(DOCKERFILE.read_text())
    return parsed


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_multi_stage_on_a_slim_python(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        match = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage.base)
        assert match, f"{stage.base} is not a slim Python image"
        assert int(match.group(1)) >= 11, "the exporter needs Python 3.11+"
    assert len({s.base for s in stages}) == 1, "build and run on the same Python, so the wheels fit"


def test_build_stage_makes_wheels(stages: list[Stage]) -> None:
    build = stages[0]
    assert build.name, "the build stage needs a name for the final stage to take its wheels from"
    assert any("pip wheel" in i.value for i in build.all("RUN"))


def test_final_stage_installs_wheels_into_a_venv_without_build_tools(stages: list[Stage], final: Stage) -> None:
    runs = final.all("RUN")
    for run in runs:
        assert not BUILD_TOOLS.search(run.flags_and_rest()[1]), f"build tooling in the final stage: {run.value}"
    install = " ".join(run.value for run in runs)
    assert "venv" in install and "--no-index" in install, "install offline from the build stage's wheels"
    takes_wheels = [i for i in runs if f"from={stages[0].name}" in i.value] + [
        i for i in final.all("COPY") if i.flags_and_rest()[0].get("from") == stages[0].name
    ]
    assert takes_wheels, f"the final stage takes nothing from stage {stages[0].name}"
    assert "--no-cache-dir" in install or final.env().get("PIP_NO_CACHE_DIR") == "1"
    env = final.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "a read-only root filesystem: no .pyc written at run time"
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    user = final.last("USER").value
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user} must be a numeric non-root id (runAsNonRoot checks it)"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart_values["securityContext"]["runAsUser"] == int(uid)
    # Nothing after USER may need root.
    after = final.instructions[final.instructions.index(final.last("USER")) :]
    assert not [i for i in after if i.keyword in {"RUN", "COPY", "ADD"}]


def test_port_entrypoint_and_command(final: Stage, pyproject: dict[str, object]) -> None:
    (port,) = final.last("EXPOSE").value.split()
    default_port = ServerConfig().listen_address.rpartition(":")[2]
    assert port == default_port == "9816"
    entrypoint = final.last("ENTRYPOINT").exec_form()
    scripts = pyproject["project"]["scripts"]  # type: ignore[index]
    assert entrypoint == ["bedrock-batch-exporter"]
    assert entrypoint[0] in scripts, f"ENTRYPOINT {entrypoint[0]} is not a [project.scripts] console script"
    command = final.last("CMD").exec_form()
    assert command == ["run", "--config", CONFIG_PATH]
    assert parse_cli(command).config == CONFIG_PATH
    # The image ships a default config where CMD looks; the chart mounts its ConfigMap over that directory.
    copies = [i.flags_and_rest()[1].split() for i in final.all("COPY") if "from" not in i.flags_and_rest()[0]]
    assert ["config.example.yaml", CONFIG_PATH] in copies


def test_shipped_default_config_is_valid(tmp_path: Path) -> None:
    check_config((REPO / "config.example.yaml").read_text(), tmp_path)


def test_oci_labels(final: Stage, pyproject: dict[str, object]) -> None:
    labels = final.labels()
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "version", "licenses"):
        assert labels.get(prefix + key), f"missing LABEL {prefix}{key}"
    assert labels[prefix + "title"] == pyproject["project"]["name"]  # type: ignore[index]
    assert labels[prefix + "licenses"] == pyproject["project"]["license"]["text"]  # type: ignore[index]
    version_arg = re.fullmatch(r"\$\{?(\w+)\}?", labels[prefix + "version"])
    assert version_arg, "the version label comes from a build argument"
    default_version = next(
        i.value.partition("=")[2] for i in final.all("ARG") if i.value.startswith(version_arg.group(1))
    )
    assert default_version == pyproject["project"]["version"]  # type: ignore[index]


def test_healthcheck_probes_healthz(final: Stage) -> None:
    healthchecks = final.all("HEALTHCHECK")
    if not healthchecks:
        return
    command = healthchecks[-1].value.split("CMD", 1)[1].strip()
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")
    assert "127.0.0.1:9816/healthz" in argv[2]


# --- .dockerignore and the build context --------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exclusion, regex) per line, in order; Docker's rule: the last matching pattern wins."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((not negated, re.compile(regex)))
    return patterns


def ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves `path` (relative to the context) out: a pattern matches it or one of its parents."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for exclude, regex in patterns:
        if any(regex.fullmatch(c) for c in candidates):
            verdict = exclude
    return verdict


def context_sources(stage: Stage) -> list[str]:
    """Paths the stage COPYs from the build context (not from another stage)."""
    sources = []
    for copy in stage.all("COPY"):
        flags, rest = copy.flags_and_rest()
        if "from" not in flags:
            sources += rest.split()[:-1]
    return sources


def test_dockerignore_keeps_the_context_small_and_complete(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    for path in [".venv/bin/python", ".git/HEAD", ".cache/bin/helm", "tests/conftest.py", "exporter/__pycache__/x.pyc"]:
        assert ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for stage in stages:
        for source in context_sources(stage):
            files = (
                [source]
                if (REPO / source).is_file()
                else [str(p.relative_to(REPO)) for p in (REPO / source).rglob("*.py") if "__pycache__" not in p.parts]
            )
            assert files, f"COPY {source}: nothing there"
            for path in files:
                assert not ignored(path, patterns), f"COPY {source}: .dockerignore leaves out {path}"


def test_build_stage_context_builds_a_wheel(stages: list[Stage], tmp_path: Path, pyproject: dict[str, object]) -> None:
    """Only what the build stage copies, filtered by .dockerignore, must be enough to build the wheel."""
    patterns = dockerignore_patterns()
    context = tmp_path / "src"
    for source in context_sources(stages[0]):
        origin = REPO / source
        files = [origin] if origin.is_file() else [p for p in origin.rglob("*") if p.is_file()]
        for path in files:
            relative = str(path.relative_to(REPO))
            if not ignored(relative, patterns):
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, context / relative)
    out = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check", ".", "-w", out],
        cwd=context,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stderr}"
    (wheel,) = out.glob("bedrock_batch_exporter-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "exporter/cli.py" in names and "exporter/__main__.py" in names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = pyproject["project"]["scripts"]  # type: ignore[index]
        text = archive.read(entry_points).decode()
        for name, target in scripts.items():
            assert f"{name} = {target}" in text
        assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]


def test_the_healthcheck_command_passes_over_http_and_https_and_fails_without_a_server(
    final: Stage, tmp_path: Path
) -> None:
    """The image's HEALTHCHECK, run as written (its port swapped for a free one) against real servers of ours."""
    import ssl
    import time

    from exporter.http import MetricsServer, Router
    from exporter.snapshot import Store

    command = json.loads(final.all("HEALTHCHECK")[-1].value.split("CMD", 1)[1].strip())
    cert_file, key_file = self_signed_certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    for context in (None, tls):
        server = MetricsServer(("127.0.0.1", 0), Router(Store(time.time), None), tls=context)
        server.start()
        try:
            port = server.server_address[1]
            script = command[2].replace("127.0.0.1:9816", f"127.0.0.1:{port}")
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, (context, done.stderr)
        finally:
            server.stop()
    gone = subprocess.run([sys.executable, "-c", command[2].replace(":9816", f":{port}")], timeout=30, check=False)
    assert gone.returncode == 1  # nothing listens there any more
