"""Grafana dashboards: structure, data source variable, variables, units, descriptions, layout."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.e2e.prom_tools import DASHBOARDS, ROOT, dashboards, variables_in

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
EXPECTED = {"bedrock-batch-overview", "bedrock-batch-jobs", "bedrock-batch-exporter"}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dashboards()[request.param]


def test_the_three_dashboards_exist_with_stable_uids() -> None:
    found = dashboards()
    assert set(found) == EXPECTED
    for name, dash in found.items():
        assert dash["uid"] == name, "uid equals the file name, so links between dashboards keep working"


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), ids


def test_panels_do_not_overlap_and_fit_the_grid(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_every_panel_and_target_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    text = json.dumps(dashboard)
    assert '"uid": "${datasource}"' in text
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, var["name"]


def test_no_hard_coded_datasource_uid_anywhere(dashboard: dict[str, Any]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "datasource" in node and isinstance(node["datasource"], dict):
                assert node["datasource"].get("uid") == "${datasource}", node["datasource"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dashboard)
    assert "__inputs" not in dashboard


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"datasource", "account", "region"} <= set(variables)
    if dashboard["uid"] != "bedrock-batch-exporter":
        assert "model" in variables
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= variables_in(target["expr"])
    for var in variables.values():
        if var["type"] == "query":
            used |= variables_in(var["query"]["query"])
            assert var["includeAll"] and var["allValue"] == ".*" and var["multi"], var["name"]
    assert used <= set(variables), f"undefined variables: {used - set(variables)}"
    unused = set(variables) - used - {"datasource"}
    assert not unused, f"variables no query uses: {unused}"


def test_every_panel_has_a_unit_a_title_and_a_description(dashboard: dict[str, Any]) -> None:
    for panel in dashboard["panels"]:
        assert panel["title"].strip()
        assert len(panel.get("description", "")) > 20, f"{panel['title']!r} needs a description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']!r} has no unit"


def test_dashboard_metadata(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"].startswith("Bedrock batch")
    assert dashboard["description"] and "bedrock-batch-exporter" in dashboard["tags"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard or dashboard["id"] is None


def test_provisioning_examples_point_at_the_dashboards() -> None:
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/bedrock-batch.yaml").read_text())
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    sources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
    assert len(DASHBOARDS) == len(EXPECTED)
