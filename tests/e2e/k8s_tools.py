"""Helpers for the deployment tests: a cached helm binary, rendered chart scenarios, manifest validation."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "bedrock-batch-exporter"
EXAMPLES = REPO / "deploy" / "examples"
RELEASE = "bbe"
NAMESPACE = "monitoring"
# The chart's kubeVersion floor (Chart.yaml) and the Kubernetes version this helm's client speaks.
KUBE_VERSIONS = ("1.28.0", "1.35.0")
# values files per scenario; "default" is the chart's values.yaml alone.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "default": (),
    "all-features": ("ci/all-features-values.yaml",),
    "sharded": ("ci/sharded-values.yaml",),
    "tls-auth": ("ci/tls-auth-values.yaml",),
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
EXPORTER_CONTAINER = "exporter"


@functools.cache
def helm_binary() -> str:
    """$HELM if set, else the one scripts/get-helm installs into .cache/bin; fails (never skips) without one."""
    if os.environ.get("HELM"):
        if not os.access(os.environ["HELM"], os.X_OK):
            pytest.fail(f"HELM={os.environ['HELM']} is not an executable helm binary")
        return os.environ["HELM"]
    result = subprocess.run([str(REPO / "scripts" / "get-helm")], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/get-helm could not install helm (exit {result.returncode}):\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, check=False, cwd=CHART)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def template_args(values_files: Iterable[str] = (), sets: Iterable[str] = ()) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSIONS[-1]]
    for path in values_files:
        args += ["--values", str(CHART / path)]
    for assignment in sets:
        args += ["--set", assignment]
    return args


@functools.cache
def _render_text(values_files: tuple[str, ...], sets: tuple[str, ...]) -> str:
    return helm(*template_args(values_files, sets)).stdout


def render(values_files: Iterable[str] = (), sets: Iterable[str] = ()) -> list[dict[str, Any]]:
    """`helm template` output as a list of resources (a fresh copy each call, so tests may change it)."""
    text = _render_text(tuple(values_files), tuple(sets))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_scenario(name: str) -> list[dict[str, Any]]:
    return render(SCENARIOS[name])


def load_manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(resources: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def one(resources: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(resources, kind)
    assert len(found) == 1, f"expected one {kind}, found {[r['metadata']['name'] for r in found]}"
    return found[0]


def workload(resources: Iterable[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [r for r in resources if r["kind"] in WORKLOAD_KINDS]
    return found


def container(pod_spec: dict[str, Any], name: str = EXPORTER_CONTAINER) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in pod_spec["containers"] if c["name"] == name]
    assert len(found) == 1, f"expected one container named {name}"
    return found[0]


def kinds(resources: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(f"{r['kind']}/{r['metadata']['name']}" for r in resources)


# --- validation ---------------------------------------------------------------------------------------------------


def validate_builtin(resource: dict[str, Any], kube_version: str) -> None:
    """Strict OpenAPI validation (unknown fields are errors) with kubernetes-validate's bundled schemas."""
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail(
            "kubernetes-validate is not installed: `.venv/bin/pip install kubernetes-validate` "
            "(it belongs in the [test] extra)"
        )
    try:
        kubernetes_validate.validate(resource, kube_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        pytest.fail(f"{resource['kind']}/{resource['metadata']['name']} at {path or '/'}: {exc.message}")


# kubernetes-validate knows only built-in kinds. For the Prometheus Operator's CRDs we check the structure the
# operator relies on ourselves: the fields we render, their types, and that nothing unexpected sits at spec level.
_SERVICE_MONITOR_SPEC = {"endpoints", "jobLabel", "namespaceSelector", "selector"}
_ENDPOINT = {
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "relabelings",
    "metricRelabelings",
    "scheme",
    "tlsConfig",
    "basicAuth",
}
_RULE_KEYS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def validate_monitoring_crd(resource: dict[str, Any]) -> None:
    """Minimal structural check of ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1)."""
    name = f"{resource['kind']}/{resource['metadata']['name']}"
    assert resource["apiVersion"] == "monitoring.coreos.com/v1", name
    assert set(resource) == {"apiVersion", "kind", "metadata", "spec"}, name
    metadata = resource["metadata"]
    assert isinstance(metadata["name"], str) and len(metadata["name"]) <= 253, name
    assert all(isinstance(v, str) for v in metadata.get("labels", {}).values()), name
    spec = resource["spec"]
    if resource["kind"] == "ServiceMonitor":
        assert set(spec) <= _SERVICE_MONITOR_SPEC, f"{name}: unknown spec keys {set(spec) - _SERVICE_MONITOR_SPEC}"
        assert spec["selector"]["matchLabels"], name
        assert all(isinstance(n, str) for n in spec["namespaceSelector"]["matchNames"]), name
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= _ENDPOINT, f"{name}: unknown endpoint keys {set(endpoint) - _ENDPOINT}"
            assert isinstance(endpoint["port"], str), name
            assert endpoint["path"].startswith("/"), name
            assert isinstance(endpoint.get("honorLabels", False), bool), name
            for relabel in endpoint.get("relabelings", []) + endpoint.get("metricRelabelings", []):
                assert isinstance(relabel, dict), name
    elif resource["kind"] == "PrometheusRule":
        assert set(spec) == {"groups"}, name
        assert spec["groups"], f"{name}: no rule groups"
        group_names = [g["name"] for g in spec["groups"]]
        assert len(group_names) == len(set(group_names)), f"{name}: duplicate group names {group_names}"
        for group in spec["groups"]:
            assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}, name
            assert group["rules"], f"{name}: group {group['name']} has no rules"
            for rule in group["rules"]:
                assert set(rule) <= _RULE_KEYS, f"{name}: unknown rule keys {set(rule) - _RULE_KEYS}"
                assert ("record" in rule) != ("alert" in rule), f"{name}: {rule} needs exactly one of record/alert"
                assert isinstance(rule["expr"], str) and rule["expr"].strip(), f"{name}: {rule} has no expr"
                for key in ("labels", "annotations"):
                    assert all(isinstance(v, str) for v in rule.get(key, {}).values()), f"{name}: {rule}"
    else:
        raise AssertionError(f"no structural check for {name}")


def validate(resource: dict[str, Any], kube_version: str) -> None:
    if resource["apiVersion"].startswith("monitoring.coreos.com/"):
        validate_monitoring_crd(resource)
    else:
        validate_builtin(resource, kube_version)


# The "restricted" Pod Security Standard (kubernetes.io/docs/concepts/security/pod-security-standards), plus the two
# things this project adds: a read-only root filesystem and a numeric non-root user.
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod_spec: dict[str, Any], containers: Iterable[str] | None = None) -> list[str]:
    """Why `pod_spec` (or the named containers in it) breaks the restricted profile; empty when it does not."""
    problems = []
    pod = pod_spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            problems.append(f"pod: {key}")
    for volume in pod_spec.get("volumes", []):
        kind = (set(volume) - {"name"}).pop()
        if kind not in _RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kind} is not allowed")
    if pod.get("runAsUser") == 0:
        problems.append("pod: runAsUser 0")
    all_containers = pod_spec["containers"] + pod_spec.get("initContainers", [])
    wanted = set(containers) if containers is not None else {c["name"] for c in all_containers}
    for item in all_containers:
        if item["name"] not in wanted:
            continue
        sc = item.get("securityContext", {})
        where = f"container {item['name']}"

        def effective(key: str, sc: dict[str, Any] = sc) -> Any:
            return sc.get(key, pod.get(key))

        if effective("runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        user = effective("runAsUser")
        if not isinstance(user, int) or user == 0:
            problems.append(f"{where}: runAsUser {user!r} is not a numeric non-root id")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem is not true")
        capabilities = sc.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{where}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: adds capabilities {capabilities['add']}")
        if (effective("seccompProfile") or {}).get("type") not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{where}: seccompProfile is not RuntimeDefault or Localhost")
        if any(port.get("hostPort") for port in item.get("ports", [])):
            problems.append(f"{where}: hostPort")
    return problems


# --- the exporter itself ------------------------------------------------------------------------------------------


def check_config(config_text: str, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    """`python -m exporter check-config` on the text; returns its output, fails the test on a non-zero exit."""
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    assert result.returncode == 0, f"check-config rejected the rendered config:\n{result.stderr}\n---\n{config_text}"
    return result.stdout


def container_env(item: dict[str, Any]) -> dict[str, str]:
    """The literal `value`s of a container's env (what ${VAR} in the config can use)."""
    return {e["name"]: e["value"] for e in item.get("env", []) if "value" in e}


def parse_cli(argv: list[str]) -> Any:
    """Parse arguments with the exporter's real argument parser; a usage error fails the test."""
    from exporter.cli import _parser

    try:
        return _parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"bedrock-batch-exporter rejects {argv} (exit {exc.code})")


def identical_copies(pairs: Iterable[tuple[Path, Path]]) -> Iterator[str]:
    """Messages for every (source, copy) pair whose bytes differ or whose copy is missing."""
    for source, copy in pairs:
        fix = f"cp {source.relative_to(REPO)} {copy.relative_to(REPO)}"
        if not copy.exists():
            yield f"{copy.relative_to(REPO)} is missing: {fix}"
        elif source.read_bytes() != copy.read_bytes():
            yield f"{copy.relative_to(REPO)} differs from its source {source.relative_to(REPO)}: {fix}"
