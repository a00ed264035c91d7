"""Every Kubernetes manifest we ship, validated strictly against the Kubernetes API schemas.

Built-in kinds go through kubernetes-validate (its bundled OpenAPI schemas, strict: unknown fields are errors) for
the chart's kubeVersion floor and for the version this helm speaks. The Prometheus Operator's ServiceMonitor and
PrometheusRule are CRDs it has no schema for: k8s_tools.validate_monitoring_crd checks their structure minimally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.k8s_tools import (
    EXAMPLES,
    KUBE_VERSIONS,
    SCENARIOS,
    WORKLOAD_KINDS,
    by_kind,
    check_config,
    container,
    container_env,
    load_manifests,
    parse_cli,
    render_scenario,
    restricted_violations,
    validate,
)

pytestmark = pytest.mark.e2e

SIDECAR = EXAMPLES / "sidecar.yaml"


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chart_manifests_are_valid(scenario: str, kube_version: str) -> None:
    resources = render_scenario(scenario)
    assert resources
    for resource in resources:
        validate(resource, kube_version)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_examples_are_valid(kube_version: str) -> None:
    files = example_files()
    assert SIDECAR in files
    for path in files:
        for resource in load_manifests(path):
            validate(resource, kube_version)


def test_validation_catches_mistakes() -> None:
    """The validator is strict: an unknown field or a wrong type fails, so a pass above means something."""
    (deployment,) = by_kind(render_scenario("default"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(pytest.fail.Exception, match="securityContxt"):
        validate(deployment, KUBE_VERSIONS[-1])
    (deployment,) = by_kind(render_scenario("default"), "Deployment")
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(pytest.fail.Exception):
        validate(deployment, KUBE_VERSIONS[-1])
    (monitor,) = by_kind(render_scenario("all-features"), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "1m"
    with pytest.raises(AssertionError, match="intervall"):
        validate(monitor, KUBE_VERSIONS[-1])


def sidecar_pod() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    resources = load_manifests(SIDECAR)
    (deployment,) = [r for r in resources if r["kind"] in WORKLOAD_KINDS]
    return deployment["spec"]["template"]["spec"], resources


def test_sidecar_runs_the_exporter_beside_the_application() -> None:
    pod, resources = sidecar_pod()
    names = [c["name"] for c in pod["containers"]]
    assert len(names) == 2 and "exporter" in names, names
    # Every container, the application's too, meets the restricted profile.
    assert restricted_violations(pod) == []
    exporter = container(pod)
    assert exporter["image"].split("@")[0].split(":")[0].endswith("bedrock-batch-exporter")
    (port,) = exporter["ports"]
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    # Not /readyz: a sidecar must not take the application out of its Service while AWS is unreachable.
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert exporter["resources"]["requests"] and exporter["resources"]["limits"]["memory"]
    args = parse_cli(exporter["args"])
    assert args.command == "run"
    assert args.listen_address.endswith(f":{port['containerPort']}")
    (mount,) = exporter["volumeMounts"]
    assert Path(args.config).parent == Path(mount["mountPath"])
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmaps = {c["metadata"]["name"]: c for c in by_kind(resources, "ConfigMap")}
    assert volume["configMap"]["name"] in configmaps


def test_sidecar_config_passes_check_config(tmp_path: Path) -> None:
    pod, resources = sidecar_pod()
    exporter = container(pod)
    args = parse_cli(exporter["args"])
    (mount,) = exporter["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (configmap,) = [c for c in by_kind(resources, "ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]]
    text = configmap["data"][Path(args.config).name]
    assert "ok" in check_config(text, tmp_path, container_env(exporter))
