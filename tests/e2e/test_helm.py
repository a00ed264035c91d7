"""The Helm chart (deploy/helm/bedrock-batch-exporter) with a real helm: lint, render, and what the render means."""

from __future__ import annotations

import json
import re
import tomllib
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from exporter.http import MetricsServer, Router
from exporter.runbooks import RunbooksPage
from exporter.snapshot import Store
from tests.conftest import self_signed_certificate
from tests.e2e.k8s_tools import (
    CHART,
    NAMESPACE,
    REPO,
    SCENARIOS,
    by_kind,
    check_config,
    container,
    container_env,
    helm,
    identical_copies,
    kinds,
    one,
    parse_cli,
    render,
    render_scenario,
    restricted_violations,
    template_args,
    workload,
)

pytestmark = pytest.mark.e2e

FULLNAME = "bbe-bedrock-batch-exporter"
RULES_SOURCE = REPO / "deploy" / "prometheus" / "bedrock-batch.rules.yaml"
RULES_COPY = CHART / "files" / "bedrock-batch.rules.yaml"
DASHBOARDS_COPY = CHART / "files" / "dashboards"
RUNBOOKS_PAGE = REPO / "exporter" / "assets" / "runbooks.html"
# The base every runbook_url of the shipped rules starts with; the chart replaces it with runbooks.baseURL.
RUNBOOKS_PLACEHOLDER = "https://runbooks.example.invalid/runbooks"


def dashboard_sources() -> list[Path]:
    """The repository's Grafana dashboards: grafana/dashboards/*.json, or grafana/*.json in a flat layout."""
    nested = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    return nested or sorted((REPO / "grafana").glob("*.json"))


def config_of(resources: list[dict[str, Any]]) -> str:
    configmap = next(r for r in by_kind(resources, "ConfigMap") if r["metadata"]["name"] == FULLNAME)
    text: str = configmap["data"]["config.yaml"]
    return text


def pod_annotations(resources: list[dict[str, Any]]) -> dict[str, str]:
    annotations: dict[str, str] = workload(resources)["spec"]["template"]["metadata"]["annotations"]
    return annotations


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_is_clean(scenario: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in SCENARIOS[scenario]:
        args += ["--values", str(CHART / path)]
    result = helm(*args)
    assert "0 chart(s) failed" in result.stdout


def test_rendered_resources_by_scenario() -> None:
    assert kinds(render_scenario("default")) == [
        f"ConfigMap/{FULLNAME}",
        f"Deployment/{FULLNAME}",
        f"Service/{FULLNAME}",
        f"ServiceAccount/{FULLNAME}",
    ]
    assert kinds(render_scenario("all-features")) == [
        f"ConfigMap/{FULLNAME}",
        f"ConfigMap/{FULLNAME}-dashboards",
        f"Deployment/{FULLNAME}",
        f"NetworkPolicy/{FULLNAME}",
        f"PrometheusRule/{FULLNAME}",
        f"Service/{FULLNAME}",
        f"ServiceAccount/{FULLNAME}",
        f"ServiceMonitor/{FULLNAME}",
    ]
    assert kinds(render_scenario("sharded")) == [
        f"ConfigMap/{FULLNAME}",
        f"NetworkPolicy/{FULLNAME}",
        f"Service/{FULLNAME}",
        f"Service/{FULLNAME}-headless",
        f"ServiceAccount/{FULLNAME}",
        f"ServiceMonitor/{FULLNAME}",
        f"StatefulSet/{FULLNAME}",
    ]


def test_values_schema_rejects_unknown_and_wrong_keys() -> None:
    for bad in (
        "bogus=1",
        "serviceMonitor.enbled=true",
        "sharding.shards=0",
        "logFormat=xml",
        "image.digest=latest",
        "runbooks.baseURL=docs/runbooks.md",
        "runbooks.baseURL=https://docs.example.com/r.html#x",
    ):
        result = helm(*template_args(sets=[bad]), check=False)
        assert result.returncode != 0, f"--set {bad} was accepted"
        assert "schema" in result.stderr, result.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_config_passes_check_config(scenario: str, tmp_path: Path) -> None:
    resources = render_scenario(scenario)
    # ${VAR} references are filled from the container's environment, as in the pod.
    env = container_env(container(workload(resources)["spec"]["template"]["spec"]))
    config = yaml.safe_load(config_of(resources))
    web_file = config.get("server", {}).get("web_config_file")
    if web_file is not None:  # the pod's file, from the rendered Secret, with its certificate paths made local
        assert web_file == "/etc/bedrock-batch-exporter-web/web-config.yml"
        web = yaml.safe_load(one(resources, "Secret")["stringData"]["web-config.yml"])
        cert_file, key_file = self_signed_certificate(tmp_path)
        web["tls_server_config"].update(cert_file=str(cert_file), key_file=str(key_file))
        local = tmp_path / "web-config.yml"
        local.write_text(yaml.safe_dump(web))
        config["server"]["web_config_file"] = str(local)
    assert "ok" in check_config(yaml.safe_dump(config), tmp_path, env)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pod_meets_restricted_pod_security(scenario: str) -> None:
    pod = workload(render_scenario(scenario))["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["runAsUser"] == container(pod)["securityContext"]["runAsUser"] == 65532
    assert pod["automountServiceAccountToken"] is False
    assert container(pod)["resources"]["requests"] and container(pod)["resources"]["limits"]["memory"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_ports_and_arguments_agree(scenario: str) -> None:
    resources = render_scenario(scenario)
    pod = workload(resources)["spec"]["template"]["spec"]
    exporter = container(pod)
    (port,) = exporter["ports"]
    scheme = "HTTPS" if scenario == "tls-auth" else "HTTP"
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"], "scheme": scheme}
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"], "scheme": scheme}
    args = exporter["args"]
    assert f"--listen-address=:{port['containerPort']}" in args
    assert "--config=/etc/bedrock-batch-exporter/config.yaml" in args
    mount = exporter["volumeMounts"][0]
    assert mount["mountPath"] == "/etc/bedrock-batch-exporter" and mount["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == FULLNAME
    assert {m["name"] for m in exporter["volumeMounts"]} == set(volumes)  # every volume mounted, nothing dangling
    service = next(s for s in by_kind(resources, "Service") if s["metadata"]["name"] == FULLNAME)
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["selector"].items() <= pod_labels(resources).items()
    parse_cli([a.replace("$(SHARD_INDEX)", "0") for a in args])


def pod_labels(resources: list[dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = workload(resources)["spec"]["template"]["metadata"]["labels"]
    return labels


def test_config_change_rolls_the_pods() -> None:
    base = pod_annotations(render())["checksum/config"]
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert pod_annotations(render())["checksum/config"] == base
    # Values outside the config leave the pods alone; a config change changes the hash.
    assert pod_annotations(render(sets=["logLevel=debug"]))["checksum/config"] == base
    changed = pod_annotations(render(sets=["config.targets[0].regions[0]=eu-west-1"]))["checksum/config"]
    assert changed != base
    assert pod_annotations(render(sets=["config.aws.max_attempts=5"]))["checksum/config"] not in {base, changed}
    sharded = workload(render_scenario("sharded"))
    assert re.fullmatch(r"[0-9a-f]{64}", sharded["spec"]["template"]["metadata"]["annotations"]["checksum/config"])


def test_irsa_role_annotation() -> None:
    account = one(render(), "ServiceAccount")
    assert "eks.amazonaws.com/role-arn" not in account["metadata"].get("annotations", {})
    role = "arn:aws:iam::123456789012:role/bedrock-batch-exporter"
    account = one(render(sets=[f"serviceAccount.roleArn={role}"]), "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role
    assert account["automountServiceAccountToken"] is False
    pod = workload(render(sets=[f"serviceAccount.roleArn={role}"]))["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    existing = render(sets=["serviceAccount.create=false", "serviceAccount.name=shared"])
    assert by_kind(existing, "ServiceAccount") == []
    assert workload(existing)["spec"]["template"]["spec"]["serviceAccountName"] == "shared"


def test_sharded_mode_runs_one_statefulset_pod_per_shard() -> None:
    shards = yaml.safe_load((CHART / SCENARIOS["sharded"][0]).read_text())["sharding"]["shards"]
    resources = render_scenario("sharded")
    assert by_kind(resources, "Deployment") == []
    statefulset = one(resources, "StatefulSet")
    spec = statefulset["spec"]
    assert spec["replicas"] == shards
    assert spec["podManagementPolicy"] == "Parallel"
    headless = next(s for s in by_kind(resources, "Service") if s["metadata"]["name"] == spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    exporter = container(spec["template"]["spec"])
    assert "--shard-index=$(SHARD_INDEX)" in exporter["args"]
    assert f"--shard-count={shards}" in exporter["args"]
    (shard_env,) = [e for e in exporter["env"] if e["name"] == "SHARD_INDEX"]
    assert shard_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    # Kubernetes expands $(SHARD_INDEX) only from variables defined before use in the same container.
    assert [e["name"] for e in exporter["env"]].index("SHARD_INDEX") == 0
    # The ServiceMonitor scrapes every shard once: it selects the ClusterIP Service, not the headless one too.
    selector = one(resources, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    selected = [s["metadata"]["name"] for s in by_kind(resources, "Service") if selector.items() <= labels(s).items()]
    assert selected == [FULLNAME]


def test_every_shard_index_is_accepted_by_the_cli() -> None:
    args = container(workload(render_scenario("sharded"))["spec"]["template"]["spec"])["args"]
    count = int(next(a for a in args if a.startswith("--shard-count=")).partition("=")[2])
    for index in range(count):
        parsed = parse_cli([a.replace("$(SHARD_INDEX)", str(index)) for a in args])
        assert (parsed.shard_index, parsed.shard_count) == (index, count)


def labels(resource: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = resource["metadata"].get("labels", {})
    return found


def test_service_monitor_scrapes_the_service_as_the_rules_expect() -> None:
    resources = render_scenario("all-features")
    monitor = one(resources, "ServiceMonitor")
    service = one(resources, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels(service).items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The rules' "exporter down" alert matches a job label; the ServiceMonitor's job comes from jobLabel.
    job = labels(service)[monitor["spec"]["jobLabel"]]
    expected_jobs = set(re.findall(r'job="([^"]+)"', RULES_COPY.read_text()))
    assert expected_jobs <= {job}, f"rules expect job {expected_jobs}, the ServiceMonitor yields job={job!r}"
    custom = render(SCENARIOS["all-features"], sets=["config.server.metrics_path=/custom"])
    assert one(custom, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/custom"


def with_runbooks(rule: dict[str, Any], base: str) -> dict[str, Any]:
    """The shipped rule with its runbook_url's placeholder base replaced, as the chart does."""
    expected = dict(rule)
    if "runbook_url" in rule.get("annotations", {}):
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOKS_PLACEHOLDER + "#"), url
        expected["annotations"] = {**rule["annotations"], "runbook_url": base + url[len(RUNBOOKS_PLACEHOLDER) :]}
    return expected


def test_prometheus_rule_carries_the_repository_rules() -> None:
    rules = yaml.safe_load(RULES_COPY.read_text())
    rendered = one(render_scenario("all-features"), "PrometheusRule")["spec"]["groups"]
    assert [g["name"] for g in rendered] == [g["name"] for g in rules["groups"]]
    values = yaml.safe_load((CHART / SCENARIOS["all-features"][0]).read_text())
    extra = values["prometheusRule"]
    for group, source in zip(rendered, rules["groups"], strict=True):
        for rule, original in zip(group["rules"], source["rules"], strict=True):
            expected = with_runbooks(original, values["runbooks"]["baseURL"])
            if "alert" in original:
                expected["labels"] = {**original.get("labels", {}), **extra["additionalRuleLabels"]}
            assert rule == expected
    plain = one(render(sets=["prometheusRule.enabled=true"]), "PrometheusRule")["spec"]["groups"]
    default_base = f"http://{FULLNAME}.{NAMESPACE}.svc:9816/runbooks"
    assert plain == [{**g, "rules": [with_runbooks(r, default_base) for r in g["rules"]]} for g in rules["groups"]]


def runbook_urls(resources: list[dict[str, Any]]) -> dict[str, str]:
    """Alert name -> runbook_url in the rendered PrometheusRule."""
    groups = one(resources, "PrometheusRule")["spec"]["groups"]
    return {r["alert"]: r["annotations"]["runbook_url"] for g in groups for r in g["rules"] if "alert" in r}


def page_ids(page: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page))


@pytest.mark.parametrize(
    "base",
    ["", "https://docs.example.com/bedrock-batch/runbooks.html", "https://wiki.example.com/ops/bedrock/"],
)
def test_every_rendered_runbook_url_opens_an_existing_anchor(base: str) -> None:
    """Each alert links with an absolute URL to an anchor of the runbooks page, with and without runbooks.baseURL."""
    urls = runbook_urls(render(sets=["prometheusRule.enabled=true", f"runbooks.baseURL={base}"]))
    assert len(urls) >= 12
    expected_base = base.rstrip("/") or f"http://{FULLNAME}.{NAMESPACE}.svc:9816/runbooks"
    ids = page_ids(RUNBOOKS_PAGE.read_text(encoding="utf-8"))
    for alert, url in urls.items():
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.netloc, f"{alert}: {url} is not absolute"
        assert url == f"{expected_base}#{alert.lower()}", f"{alert}: {url}"
        assert parts.fragment in ids, f"{alert}: #{parts.fragment} is not an id on the runbooks page"


def test_default_runbook_urls_are_answered_by_the_exporter() -> None:
    """Follow each default link to a real exporter HTTP server (the in-cluster Service host swapped for 127.0.0.1)."""
    urls = runbook_urls(render(sets=["prometheusRule.enabled=true", "service.port=9900"]))
    server = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), None, pages=(RunbooksPage(),)))
    server.start()
    try:
        pages: dict[str, set[str]] = {}
        for alert, url in urls.items():
            parts = urlsplit(url)
            assert parts.netloc == f"{FULLNAME}.{NAMESPACE}.svc:9900", url
            local = urlunsplit(("http", urlsplit(server.url).netloc, parts.path, parts.query, ""))
            if local not in pages:
                with urllib.request.urlopen(local, timeout=5) as response:
                    assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
                    pages[local] = page_ids(response.read().decode())
            assert parts.fragment in pages[local], f"{alert}: #{parts.fragment} missing at {local}"
    finally:
        server.stop()


def test_chart_rules_are_a_byte_identical_copy_of_the_repository_rules() -> None:
    """Helm cannot read files outside the chart, so it carries a copy that must not drift from the source."""
    if not RULES_SOURCE.exists():
        pytest.skip(
            f"comparing {RULES_COPY.relative_to(REPO)} against {RULES_SOURCE.relative_to(REPO)}, "
            "which does not exist yet: the chart holds a placeholder"
        )
    assert list(identical_copies([(RULES_SOURCE, RULES_COPY)])) == []


def test_dashboards_configmap_carries_the_repository_dashboards() -> None:
    sources = dashboard_sources()
    copies = sorted(DASHBOARDS_COPY.glob("*.json"))
    assert [p.name for p in copies] == [p.name for p in sources], (
        f"{DASHBOARDS_COPY.relative_to(REPO)} must hold exactly the repository's dashboards "
        f"{[str(p.relative_to(REPO)) for p in sources]}"
    )
    assert list(identical_copies((source, DASHBOARDS_COPY / source.name) for source in sources)) == []
    resources = render_scenario("all-features")
    configmap = next(r for r in by_kind(resources, "ConfigMap") if r["metadata"]["name"].endswith("-dashboards"))
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "AWS"}
    assert sorted(configmap.get("data", {})) == [p.name for p in copies]
    for path in copies:
        assert json.loads(configmap["data"][path.name]) == json.loads(path.read_text())
    # A ConfigMap holds at most 1 MiB.
    assert sum(len(v.encode()) for v in configmap.get("data", {}).values()) < 1024 * 1024


def test_network_policy_allows_scrapes_and_aws() -> None:
    policy = one(render_scenario("all-features"), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP"), (80, "TCP"), (4566, "TCP")} <= egress_ports
    open_egress = one(
        render(sets=["networkPolicy.enabled=true", "networkPolicy.egress.enabled=false"]), "NetworkPolicy"
    )
    assert open_egress["spec"]["policyTypes"] == ["Ingress"] and "egress" not in open_egress["spec"]


def test_image_reference() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container(workload(render())["spec"]["template"]["spec"])["image"] == f"bedrock-batch-exporter:{app_version}"
    digest = "sha256:" + "a" * 64
    image = container(
        workload(render(sets=["image.repository=r.example/x", f"image.digest={digest}"]))["spec"]["template"]["spec"]
    )["image"]
    assert image == f"r.example/x@{digest}"


def test_chart_app_version_is_the_project_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == project["version"]


def test_notes_render() -> None:
    result = helm("install", "bbe", str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"port-forward svc/{FULLNAME} 9816" in notes
    assert "EKS Pod Identity" in notes
    assert "runbook" not in notes  # no PrometheusRule, no runbook links to explain


def test_notes_say_where_default_runbook_links_open() -> None:
    args = ["install", "bbe", str(CHART), "--dry-run=client", "--namespace", NAMESPACE, "--set"]
    notes = helm(*args, "prometheusRule.enabled=true").stdout.split("NOTES:", 1)[1]
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:9816/runbooks" in notes
    assert "only inside the cluster" in notes and "not at all while the exporter is down" in notes
    assert "runbooks.baseURL" in notes
    chosen = helm(*args, "prometheusRule.enabled=true,runbooks.baseURL=https://docs.example.com/r.html").stdout
    assert "only inside the cluster" not in chosen.split("NOTES:", 1)[1]


# Documented in one row each: the probes' timing keys are Kubernetes' own.
WHOLE_VALUES = {"livenessProbe", "readinessProbe"}


def schema_leaves(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted value paths: the chart's own (strict) keys are followed down, free-form ones are leaves."""
    leaves = []
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if sub.get("additionalProperties") is False and path not in WHOLE_VALUES:
            leaves += schema_leaves(sub, f"{path}.")
        else:
            leaves.append(path)
    return leaves


def test_values_schema_and_readme_cover_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    leaves = [leaf for leaf in schema_leaves(schema) if leaf != "global"]
    for leaf in leaves:
        node: Any = values
        for part in leaf.split("."):
            assert isinstance(node, dict) and part in node, f"{leaf} is in values.schema.json, not in values.yaml"
            node = node[part]
        assert f"| `{leaf}` |" in readme, f"the chart README's values table misses {leaf}"
    documented = set(re.findall(r"^\| `([\w.]+)` \|", readme, flags=re.MULTILINE))
    assert documented == set(leaves), f"README documents unknown values {documented - set(leaves)}"


def test_kubernetes_older_than_the_pod_index_label_is_refused() -> None:
    args = template_args()
    args[args.index("--kube-version") + 1] = "1.27.9"
    result = helm(*args, check=False)
    assert result.returncode != 0 and "kubeVersion" in result.stderr, result.stderr


def test_tls_and_basic_auth_reach_the_probes_the_service_monitor_and_the_config() -> None:
    resources = render_scenario("tls-auth")
    pod = workload(resources)["spec"]["template"]["spec"]
    exporter = container(pod)
    assert exporter["livenessProbe"]["httpGet"]["scheme"] == exporter["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    secret = one(resources, "Secret")
    web = yaml.safe_load(secret["stringData"]["web-config.yml"])
    assert web["health_without_auth"] is True and "prometheus" in web["basic_auth_users"]
    mounts = {m["mountPath"]: m["name"] for m in exporter["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/bedrock-batch-exporter-web"]]["secret"]["secretName"] == secret["metadata"]["name"]
    assert volumes[mounts["/etc/bedrock-batch-exporter-tls"]]["secret"]["secretName"] == "bedrock-batch-exporter-tls"
    assert web["tls_server_config"]["cert_file"].startswith("/etc/bedrock-batch-exporter-tls/")
    assert (
        yaml.safe_load(config_of(resources))["server"]["web_config_file"]
        == "/etc/bedrock-batch-exporter-web/web-config.yml"
    )
    (endpoint,) = one(resources, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": "bedrock-batch-exporter-tls", "key": "ca.crt"}
    assert endpoint["basicAuth"]["password"] == {"name": "bedrock-batch-exporter-scrape", "key": "password"}
    # an existing Secret instead of inline content: no Secret rendered, that one mounted, the key chosen
    existing = render(
        SCENARIOS["tls-auth"], sets=["webConfig.existingSecret=mine", "webConfig.key=web.yml", "webConfig.tls=false"]
    )
    assert not by_kind(existing, "Secret")
    pod = workload(existing)["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["web-config"]["secret"]["secretName"] == "mine"
    assert yaml.safe_load(config_of(existing))["server"]["web_config_file"] == "/etc/bedrock-batch-exporter-web/web.yml"
    assert container(pod)["livenessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert one(existing, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "http"


def test_prometheus_rule_overrides_disable_rethreshold_and_add() -> None:
    sets = [
        "prometheusRule.enabled=true",
        "prometheusRule.disabledAlerts[0]=BedrockBatchJobFailed",
        "prometheusRule.alertOverrides.BedrockBatchExporterDataStale.for=7m",
        "prometheusRule.alertOverrides.BedrockBatchExporterDataStale.labels.severity=critical",
        "prometheusRule.additionalGroups[0].name=mine",
        "prometheusRule.additionalGroups[0].rules[0].record=my:up",
        "prometheusRule.additionalGroups[0].rules[0].expr=up",
    ]
    groups = one(render(sets=sets), "PrometheusRule")["spec"]["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    shipped = {r["alert"] for g in yaml.safe_load(RULES_COPY.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) == shipped - {"BedrockBatchJobFailed"}
    stale = alerts["BedrockBatchExporterDataStale"]
    assert stale["for"] == "7m" and stale["labels"]["severity"] == "critical"
    assert groups[-1] == {"name": "mine", "rules": [{"record": "my:up", "expr": "up"}]}
    unknown = helm(
        *template_args((), ("prometheusRule.enabled=true", "prometheusRule.disabledAlerts[0]=Nope")), check=False
    )
    assert unknown.returncode != 0 and '"Nope" is not an alert of the shipped rules' in unknown.stderr


def test_the_readme_says_the_dashboards_need_the_recording_rules_they_use() -> None:
    rules = yaml.safe_load(RULES_SOURCE.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    used = set()
    for path in dashboard_sources():
        used |= set(re.findall(r"\b[a-z_]+:[a-z_]+:[a-z_]+\b", path.read_text())) & recorded
    assert used, "the dashboards use no recording rule: drop the README's sentence"
    readme = (REPO / "README.md").read_text()
    assert "They need the recording\n  rules below" in readme
    for prefix in {name.split(":", 1)[0] for name in used}:
        assert f"`{prefix}:*`" in readme, prefix
