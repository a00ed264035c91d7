"""Helpers for the Prometheus/Grafana e2e tests: the repository's rules and dashboards, PromQL from them, binaries."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "bedrock-batch.rules.yaml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yaml"))
EXAMPLE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"

# Grafana's built-in variables, replaced by values a 1s-scrape, minute-old Prometheus can answer.
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m", "${__range}": "5m"}
_USER_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
# Metric names and recording-rule names in the expressions we write (all carry one of these prefixes).
_METRIC = re.compile(r"\b((?:aws_bedrock_batch_|bedrock_batch_)[A-Za-z0-9_:]*|up)\b(?!\s*\()")


def binary(name: str) -> str:
    """Path of a required binary; fails (never skips) when it is missing, since CI installs it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name!r} is not on PATH: these tests need Prometheus' {name}. On Debian/Ubuntu: "
            "apt-get install -y --no-install-recommends prometheus",
            pytrace=False,
        )
    return path


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


def rule_groups(path: Path = RULES_FILE) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text())["groups"])


def rules(path: Path = RULES_FILE) -> Iterator[dict[str, Any]]:
    for group in rule_groups(path):
        yield from group["rules"]


def recording_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "record" in r]


def alerting_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in DASHBOARDS}


def substitute(expr: str) -> str:
    """A dashboard expression with every variable replaced: built-ins by durations, user variables by `.*`."""
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    return _USER_VARIABLE.sub(".*", expr)


def variables_in(text: str) -> set[str]:
    return {a or b for a, b in _USER_VARIABLE.findall(text) if not (a or b).startswith("__")}


def metric_names(expr: str) -> set[str]:
    """Series names an expression reads (our prefixes and `up`); label names inside braces are skipped."""
    without_matchers = re.sub(r"\{[^}]*\}", "{}", expr)
    without_strings = re.sub(r'"[^"]*"', '""', without_matchers)
    without_by = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_strings)
    return set(_METRIC.findall(without_by))


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel!r} / {self.ref}"


def panel_queries() -> list[PanelQuery]:
    found = []
    for name, dash in dashboards().items():
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                found.append(PanelQuery(name, panel["title"], target["refId"], target["expr"]))
    return found


def variable_queries() -> list[PanelQuery]:
    """The selectors of `label_values(selector, label)` template variables, as queries."""
    found = []
    for name, dash in dashboards().items():
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert match, f"{name}: variable {var['name']} is not label_values(selector, label): {query}"
            found.append(PanelQuery(name, f"variable {var['name']}", match.group(2), match.group(1)))
    return found
