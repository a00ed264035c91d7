from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.iam_check import check_policy, policy_actions


def test_shipped_policy_is_read_only_plus_assume_role() -> None:
    actions = policy_actions()
    assert actions == {
        "cloudwatch:GetMetricData",
        "cloudwatch:ListMetrics",
        "bedrock:ListModelInvocationJobs",
        "sts:AssumeRole",
        "servicequotas:ListAWSDefaultServiceQuotas",  # jobs.quotas (on by default): quota headroom
        "servicequotas:ListServiceQuotas",
        "bedrock:ListFoundationModels",
        "bedrock:ListTagsForResource",  # optional statement, for jobs.tag_labels, scoped to batch jobs
        "s3:GetObject",  # optional statement, for jobs.read_manifests, scoped to manifest.json.out objects
    }
    assert not any(a.endswith("*") or a.split(":")[1].startswith(("Put", "Create", "Delete")) for a in actions)


def test_missing_and_unused_actions_are_reported(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text('{"Statement": [{"Effect": "Allow", "Action": ["cloudwatch:ListMetrics", "s3:GetObject"]}]}')
    calls = Counter(
        {("monitoring", "ListMetrics"): 2, ("monitoring", "GetMetricData"): 1, ("sts", "GetCallerIdentity"): 1}
    )
    assert check_policy([calls], full=False, path=policy) == [
        "the exporter called cloudwatch:GetMetricData, which policy.json does not allow"
    ]
    assert (
        check_policy([calls], full=True, path=policy)[-1]
        == "policy.json allows s3:GetObject, which the exporter never called"
    )
