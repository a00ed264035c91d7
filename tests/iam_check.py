"""Compare the AWS operations the exporter performed in the tests with deploy/iam/policy.json.

Calls are recorded by the simulated AWS as (SigV4 service, operation). S3 speaks REST, so its calls arrive as
"METHOD /bucket/key" (path-style addressing against 127.0.0.1): a plain GET of an object is s3:GetObject on
`arn:aws:s3:::bucket/key`, and that ARN must match the Resource of a statement allowing it (IAM wildcards).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from functools import cache
from pathlib import Path

POLICY = Path(__file__).resolve().parents[1] / "deploy" / "iam" / "policy.json"
# SigV4 service name -> IAM action prefix
PREFIX = {"monitoring": "cloudwatch", "bedrock": "bedrock", "sts": "sts", "s3": "s3", "servicequotas": "servicequotas"}
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}  # AWS answers it for any valid credentials
# Statements for opt-in features (docs/job-cost.md): checked for unused actions only when their suite ran.
OPTIONAL_SIDS = {"OptionalReadBatchJobManifests", "OptionalReadBatchJobTags"}


def _statements(path: Path) -> list[dict[str, object]]:
    statements: list[dict[str, object]] = json.loads(path.read_text())["Statement"]
    return [s for s in statements if s.get("Effect") == "Allow"]


def _listed(value: object) -> set[str]:
    if isinstance(value, str):
        return {value}
    return {str(v) for v in value} if isinstance(value, list) else set()


def policy_actions(path: Path = POLICY) -> set[str]:
    actions: set[str] = set()
    for statement in _statements(path):
        actions |= _listed(statement["Action"])
    return actions


def optional_actions(path: Path = POLICY) -> set[str]:
    """Actions granted only by the optional statements."""
    required = set().union(*(_listed(s["Action"]) for s in _statements(path) if s.get("Sid") not in OPTIONAL_SIDS))
    return policy_actions(path) - required


@cache
def _wildcard(pattern: str) -> re.Pattern[str]:
    """IAM's ARN matching: `*` any run of characters (slashes included), `?` one character, case-sensitive."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def allowed_resources(action: str, path: Path = POLICY) -> set[str]:
    return set().union(*(_listed(s.get("Resource", "*")) for s in _statements(path) if action in _listed(s["Action"])))


def action_of(service: str, operation: str) -> tuple[str, str]:
    """(IAM action, resource ARN or "*") of a recorded call."""
    prefix = PREFIX.get(service, service)
    if service == "s3" and " " in operation:
        method, path = operation.split(" ", 1)
        bucket, _, key = path.lstrip("/").partition("/")
        if method == "GET" and bucket and key:
            return "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"
        return f"s3:{operation}", "*"  # any other S3 request is one the policy never grants
    return f"{prefix}:{operation}", "*"


def check_policy(
    recorded: Iterable[Counter[tuple[str, str]]], full: bool, path: Path = POLICY, full_optional: bool = False
) -> list[str]:
    """Problems (empty if none): calls the policy does not allow (action or resource); with `full`, allowed actions
    never used (those of the optional statements only with `full_optional`, i.e. when their suite ran)."""
    calls = {action_of(service, operation) for counter in recorded for service, operation in counter}
    used = {action for action, _ in calls} - NEEDS_NO_PERMISSION
    allowed = policy_actions(path)
    problems = [f"the exporter called {a}, which {path.name} does not allow" for a in sorted(used - allowed)]
    for action, resource in sorted(calls):
        if action in allowed and resource != "*":
            patterns = allowed_resources(action, path)
            if not any(_wildcard(p).fullmatch(resource) for p in patterns):
                problems.append(f"the exporter called {action} on {resource}, outside {path.name}'s {sorted(patterns)}")
    if full:
        unused = allowed - used - (set() if full_optional else optional_actions(path))
        problems += [f"{path.name} allows {a}, which the exporter never called" for a in sorted(unused)]
    return problems
