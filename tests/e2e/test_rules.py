"""Prometheus rules: promtool checks and unit tests, and conventions every alert follows."""

from __future__ import annotations

import re

import pytest

from tests.e2e.prom_tools import (
    EXAMPLE_CONFIG,
    RULE_TESTS,
    RULES_FILE,
    RUNBOOKS,
    alerting_rules,
    binary,
    recording_rules,
    rule_groups,
    run,
)

pytestmark = pytest.mark.e2e
SEVERITIES = {"critical", "warning", "info"}
# The base every shipped runbook_url starts with (documented at the top of the rules file and in the README).
RUNBOOKS_PLACEHOLDER = "https://runbooks.example.invalid/runbooks"


def test_promtool_check_rules() -> None:
    result = run(binary("promtool"), "check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests/"
    result = run(binary("promtool"), "test", "rules", *map(str, RULE_TESTS), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_example_prometheus_config_is_valid() -> None:
    result = run(binary("promtool"), "check", "config", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_names_are_unique() -> None:
    recorded = [r["record"] for r in recording_rules()]
    alerts = [r["alert"] for r in alerting_rules()]
    assert len(set(recorded)) == len(recorded), recorded
    assert len(set(alerts)) == len(alerts), alerts
    assert sum(len(g["rules"]) for g in rule_groups()) == len(recorded) + len(alerts)


def test_every_alert_has_severity_summary_description_and_a_runbook() -> None:
    anchors = {_anchor(line[3:]) for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")}
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name
        url = annotations.get("runbook_url", "")
        # One documented base (replaced by the chart's runbooks.baseURL or a sed line), the alert's anchor after it.
        assert url == f"{RUNBOOKS_PLACEHOLDER}#{name.lower()}", f"{name}: runbook_url {url!r}"
        assert name.lower() in anchors, f"{name}: docs/runbooks.md has no '## {name}' section"


def test_runbook_placeholder_is_documented_where_operators_replace_it() -> None:
    assert f"sed -i 's|{RUNBOOKS_PLACEHOLDER}|" in RULES_FILE.read_text()
    assert RUNBOOKS_PLACEHOLDER in (RULES_FILE.parents[2] / "README.md").read_text()


def test_every_rule_is_covered_by_a_unit_test() -> None:
    """Every recording rule is asserted in a promql_expr_test, every alert both firing and not firing."""
    import yaml

    exprs: list[str] = []
    alert_cases: dict[str, list[bool]] = {}
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            exprs += [t["expr"] for t in case.get("promql_expr_test", [])]
            for t in case.get("alert_rule_test", []):
                alert_cases.setdefault(t["alertname"], []).append(bool(t.get("exp_alerts")))
    for rule in recording_rules():
        assert any(re.search(rf"\b{re.escape(rule['record'])}\b", e) for e in exprs), f"{rule['record']} untested"
    for rule in alerting_rules():
        cases = alert_cases.get(rule["alert"], [])
        assert True in cases, f"{rule['alert']}: no unit test where it fires"
        assert False in cases, f"{rule['alert']}: no unit test where it does not fire"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_and_alerts_doc_name_every_alert_and_count_them_right() -> None:
    names = [rule["alert"] for rule in alerting_rules()]
    root = RULES_FILE.parents[2]
    readme = (root / "README.md").read_text()
    counted = re.search(r"and (\d+) alerts, each with a runbook", readme)
    assert counted is not None and int(counted.group(1)) == len(names), "README's alert count is off"
    table = (root / "docs" / "alerts.md").read_text()
    assert [n for n in names if f"| `{n}` |" not in table] == [], "docs/alerts.md's table lacks these alerts"
