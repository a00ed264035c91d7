"""Service Quotas and Bedrock catalogue calls for quota headroom: the `bedrock` quotas (defaults and applied values)
and the foundation models' display names (ListFoundationModels), each answer checked, nothing guessed."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from exporter.errors import BadAnswerError
from exporter.model import RawQuota

log = logging.getLogger(__name__)

SERVICE_CODE = "bedrock"
PAGE_SIZE = 100  # MaxResults: 1-100 (botocore's service-quotas model)
MAX_PAGES = 50  # 5,000 quotas: Bedrock lists a few hundred
MAX_MODELS = 5_000  # ListFoundationModels is not paginated; a bound on one answer
NAME_MAX = 256  # a quota or model name kept (botocore: QuotaName has no bound; BrandedName 20, longer in practice)


def list_quotas(client: Any, applied: bool) -> list[RawQuota]:
    """The bedrock quotas: their defaults (ListAWSDefaultServiceQuotas) or their applied values (ListServiceQuotas).
    Both are needed: ListServiceQuotas "lists the applied quota values ... If the applied quota value is not available
    for a quota, the quota is not retrieved" (API reference); the applied value wins where both exist."""
    if applied:
        return _pages(client.list_service_quotas, "ListServiceQuotas", True)
    return _pages(client.list_aws_default_service_quotas, "ListAWSDefaultServiceQuotas", False)


def by_code(defaults: Iterable[RawQuota], applied: Iterable[RawQuota]) -> dict[str, RawQuota]:
    """The quotas by code, an applied value in place of the default wherever both were listed."""
    found = {q.code: q for q in defaults}
    found.update((q.code, q) for q in applied)
    return found


def _pages(call: Callable[..., Any], operation: str, applied: bool) -> list[RawQuota]:
    kwargs: dict[str, Any] = {"ServiceCode": SERVICE_CODE, "MaxResults": PAGE_SIZE}
    out: list[RawQuota] = []
    tokens: set[str] = set()
    for _ in range(MAX_PAGES):
        page = call(**kwargs)
        out.extend(parse_quotas(page, applied, operation))
        token = page.get("NextToken")
        if not token:
            return out
        if not isinstance(token, str):
            raise BadAnswerError(f"{operation} returned a NextToken that is not a string")
        if token in tokens:
            raise BadAnswerError(f"{operation} returned a NextToken it had returned before")
        tokens.add(token)
        kwargs["NextToken"] = token
    raise BadAnswerError(f"{operation} pagination did not end after {MAX_PAGES} pages")


def parse_quotas(page: Any, applied: bool, operation: str = "ListServiceQuotas") -> list[RawQuota]:
    """The usable quotas of one page; BadAnswerError when it has no Quotas list."""
    quotas = page.get("Quotas") if isinstance(page, dict) else None
    if not isinstance(quotas, list):
        raise BadAnswerError(f"{operation} answer has no Quotas list")
    return [q for entry in quotas if (q := parse_quota(entry, applied)) is not None]


def parse_quota(entry: Any, applied: bool) -> RawQuota | None:
    """One ServiceQuota, or None (logged) when it has no code, no name or no finite value in the model's range.
    A quota that carries an `ErrorReason` instead of a value ("SERVICE_QUOTA_NOT_AVAILABLE_ERROR" and the like)
    is skipped: an error is never a number."""
    if not isinstance(entry, dict):
        return None
    code, name, value = entry.get("QuotaCode"), entry.get("QuotaName"), entry.get("Value")
    if not isinstance(code, str) or not code or len(code) > 128 or not isinstance(name, str) or not name:
        log.warning("skipping a service quota without a code or name")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None  # absent (an ErrorReason instead) or not a number
    if not 0 <= value <= 1e10:  # QuotaValue: 0 to 10,000,000,000
        log.warning("skipping service quota %.40s: value outside 0..1e10", code)
        return None
    return RawQuota(code, name[:NAME_MAX], float(value), applied)


def list_foundation_models(client: Any) -> dict[str, str]:
    """Foundation model ID -> its display name (`modelName`), as ListFoundationModels reports them."""
    return parse_models(client.list_foundation_models())


def parse_models(page: Any) -> dict[str, str]:
    """ListFoundationModels' answer: model ID -> display name (entries without both are skipped)."""
    summaries = page.get("modelSummaries") if isinstance(page, dict) else None
    if not isinstance(summaries, list):
        raise BadAnswerError("ListFoundationModels answer has no modelSummaries list")
    names: dict[str, str] = {}
    for summary in summaries[:MAX_MODELS]:
        if not isinstance(summary, dict):
            continue
        model_id, name = summary.get("modelId"), summary.get("modelName")
        if isinstance(model_id, str) and model_id and isinstance(name, str) and name:
            names[model_id[:NAME_MAX]] = name[:NAME_MAX]
    return names
