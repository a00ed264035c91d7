"""Quota headroom: which concurrent batch-job quota applies to which model, how many of its jobs count, and when
the quotas are read again (docs/metrics.md#quota-headroom).

Matching, in this order, never guessed:
1. A quota named "Sum of in-progress and submitted batch inference jobs using a base model for <name>" (the name
   Service Quotas gives the per-model quota, service code `bedrock`) applies to every foundation model whose
   ListFoundationModels `modelName` is <name>, letter case and runs of white space aside.
2. `jobs.quotas.model_map` (a quota code or a whole quota name -> model IDs) adds to and overrides that.
3. A quota of that name that neither rule maps is unmatched: counted and listed on the status page.
The same rules match "Records per batch inference job for <name>" (the most records one job of the model may have),
exported next to the jobs' totalRecordCount. Quotas of other names (custom models, file and job sizes) are not read.

Counting toward a quota: AWS does not document which statuses count. Counted here: InProgress and Stopping, the
jobs that hold a slot; AWS says a job beyond the quota waits in Scheduled, so Scheduled jobs are the waiting ones,
and Submitted and Validating jobs have not asked for a slot yet. A job's model ID is resolved as prices are (an
inference-profile prefix or an ARN names the base model: exporter.pricing.candidates).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from exporter import errors
from exporter.aws.quotas import by_code, list_foundation_models, list_quotas
from exporter.model import Job, QuotaUsage, RawQuota
from exporter.pricing import candidates

log = logging.getLogger(__name__)

QUOTA_PREFIX = "sum of in-progress and submitted batch inference jobs using a base model for "
RECORDS_PREFIX = "records per batch inference job for "
HOLDING = frozenset({"InProgress", "Stopping"})
WAITING = frozenset({"Scheduled"})
Q = TypeVar("Q")
RETRY_SECONDS = 300.0  # after a failed read, try again this soon (or at the refresh interval, if sooner)


def _plain(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Matched:
    """Each model's concurrent-job quota and records-per-job quota, and the names of those no model was matched to."""

    quotas: tuple[tuple[str, RawQuota], ...] = ()
    unmatched: tuple[str, ...] = ()
    records: tuple[tuple[str, RawQuota], ...] = ()


def _prefix(name: str) -> str | None:
    """Which per-model quota a (plain) name is: its prefix, or None for every other quota."""
    return next((p for p in (QUOTA_PREFIX, RECORDS_PREFIX) if name.startswith(p)), None)


def match(quotas: Mapping[str, RawQuota], models: Mapping[str, str], model_map: Mapping[str, Sequence[str]]) -> Matched:
    """The rules of the module's notes: by display name, then the configured map (per kind of quota; a mapped quota
    of neither name is taken as a concurrent-job quota)."""
    by_name: dict[str, list[str]] = {}
    for model_id, name in models.items():
        by_name.setdefault(_plain(name), []).append(model_id)
    pairs: dict[str, dict[str, RawQuota]] = {QUOTA_PREFIX: {}, RECORDS_PREFIX: {}}
    unmatched = []
    mapped: list[tuple[str, RawQuota, list[str]]] = []
    for _, quota in sorted(quotas.items()):
        name = _plain(quota.name)
        prefix = _prefix(name)
        to = [*model_map.get(quota.code, ()), *model_map.get(quota.name, ())]
        if to:
            mapped.append((prefix or QUOTA_PREFIX, quota, to))
        if prefix is None:
            continue
        named = by_name.get(name[len(prefix) :], [])
        for model_id in named:
            pairs[prefix].setdefault(model_id, quota)
        if not to and not named:
            unmatched.append(quota.name)
    for prefix, quota, to in mapped:  # the map overrides the names
        for model_id in to:
            pairs[prefix][model_id] = quota
    return Matched(
        tuple(sorted(pairs[QUOTA_PREFIX].items())),
        tuple(sorted(unmatched)),
        tuple(sorted(pairs[RECORDS_PREFIX].items())),
    )


def quota_for(model_id: str, quotas: Mapping[str, Q]) -> Q | None:
    """What `quotas` (by model ID) holds for a job's model, resolved as prices are (an inference-profile prefix or an
    ARN names the base model), or None."""
    return next((quotas[c] for c in candidates(model_id) if c in quotas), None)


def quota_usage(matched: Matched, jobs: Iterable[Job]) -> tuple[QuotaUsage, ...]:
    """Per model with a quota: the limit, the jobs holding a slot, the jobs waiting (0 where none). Jobs are counted
    per quota: models that share one (a display name of several model IDs, or the model map) show its whole use."""
    quotas = dict(matched.quotas)
    holding: Counter[str] = Counter()  # by quota code
    waiting: Counter[str] = Counter()
    for job in jobs:
        if job.status not in HOLDING and job.status not in WAITING:
            continue
        quota = quota_for(job.model_id, quotas)
        if quota is not None:
            (holding if job.status in HOLDING else waiting)[quota.code] += 1
    return tuple(
        QuotaUsage(model, quota.code, quota.value, quota.applied, holding[quota.code], waiting[quota.code])
        for model, quota in matched.quotas
    )


class QuotaReader:
    """Reads the quotas and the model names every `refresh` seconds; a failed read keeps the last good ones."""

    def __init__(self, refresh: float, model_map: Mapping[str, Sequence[str]]) -> None:
        self._refresh = refresh
        self._model_map = model_map
        self._next = -math.inf
        self.matched = Matched()

    def refresh(
        self, now: float, quotas_client: Callable[[], Any], bedrock_client: Any, on_bad_answer: Callable[[str], None]
    ) -> None:
        """Read again when due. Denials and other AWS errors are counted by the clients' call recorder; an answer
        that does not fit the API's shape is reported to `on_bad_answer` with the operation."""
        if now < self._next:
            return
        operation = "ListAWSDefaultServiceQuotas"
        try:
            client = quotas_client()
            defaults = list_quotas(client, applied=False)
            operation = "ListServiceQuotas"
            quotas = by_code(defaults, list_quotas(client, applied=True))
            operation = "ListFoundationModels"
            models = list_foundation_models(bedrock_client)
        except Exception as exc:
            self._next = now + min(RETRY_SECONDS, self._refresh)
            if isinstance(exc, errors.BadAnswerError):
                on_bad_answer(operation)
            log.warning("reading batch quotas failed, keeping the last ones read: %s", errors.describe(exc))
            return
        self.matched = match(quotas, models, self._model_map)
        self._next = now + self._refresh
        if self.matched.unmatched:
            log.info("batch quotas no model was matched to: %s", "; ".join(self.matched.unmatched[:5]))
