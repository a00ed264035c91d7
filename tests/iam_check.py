"""Compare the AWS operations the exporter performed in the tests with deploy/iam/policy.json."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

POLICY = Path(__file__).resolve().parents[1] / "deploy" / "iam" / "policy.json"
# SigV4 service name -> IAM action prefix
PREFIX = {"monitoring": "cloudwatch", "bedrock": "bedrock", "sts": "sts"}
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}  # AWS answers it for any valid credentials


def policy_actions(path: Path = POLICY) -> set[str]:
    actions: set[str] = set()
    for statement in json.loads(path.read_text())["Statement"]:
        if statement["Effect"] == "Allow":
            listed = statement["Action"]
            actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def check_policy(recorded: Iterable[Counter[tuple[str, str]]], full: bool, path: Path = POLICY) -> list[str]:
    """Problems (empty if none): calls the policy does not allow; with `full`, allowed actions never used."""
    used = {f"{PREFIX.get(service, service)}:{operation}" for calls in recorded for service, operation in calls}
    used -= NEEDS_NO_PERMISSION
    allowed = policy_actions(path)
    problems = [f"the exporter called {a}, which {path.name} does not allow" for a in sorted(used - allowed)]
    if full:
        problems += [f"{path.name} allows {a}, which the exporter never called" for a in sorted(allowed - used)]
    return problems
