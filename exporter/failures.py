"""Why a batch job failed, as a bounded reason class for /metrics (pure; docs/metrics.md, runbooks per class).

AWS documents no catalogue of `ModelInvocationJobSummary.message` texts (botocore's bedrock model: a string of at most
2,048 characters, marked sensitive), so the classes are read from words the message uses, in the order below, and a
message that says none of them is `other`; the raw message is shown only on the status page and /api/status. The
statuses come from botocore's `ModelInvocationJobStatus` documentation: `PartiallyCompleted` and `Expired` are both
ends of a timeout (a running job or a job that never started), whatever the message says.
"""

from __future__ import annotations

FAILED_STATUSES = frozenset({"Failed", "PartiallyCompleted", "Expired"})
TIMEOUT_STATUSES = frozenset({"PartiallyCompleted", "Expired"})

# (class, words that name it), first match wins: KMS before S3 (a key's denial often names the bucket too), the
# network before access (a VPC endpoint's denial reads like one), input before quota (a "limit" on record size is
# the input's fault).
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kms", ("kms", "encryption key", "decrypt", "encrypt")),
    ("network", ("vpc", "subnet", "security group", "network interface", "eni ")),
    ("s3_access", ("s3", "bucket", "access denied", "accessdenied", "not authorized", "permission", "assume role")),
    ("input_format", ("format", "jsonl", "malformed", "invalid record", "validation", "schema", "parse", "too large")),
    ("quota", ("quota", "limit exceeded", "too many", "throttl")),
    ("timeout", ("timed out", "timeout")),
    ("internal", ("internal", "service error", "unexpected error", "try again")),
)
REASONS: tuple[str, ...] = (*(name for name, _ in _RULES), "other")


def failure_reason(status: str, message: str | None) -> str | None:
    """The reason class of a job that ended badly, None for any other status."""
    if status not in FAILED_STATUSES:
        return None
    if status in TIMEOUT_STATUSES:
        return "timeout"
    text = (message or "").lower()
    for reason, words in _RULES:
        if any(word in text for word in words):
            return reason
    return "other"
