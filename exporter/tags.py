"""Cost per tag: the allow-listed tags of finished jobs (`jobs.tag_labels`), read once per job with ListTagsForResource.

Tags are user data. A value is exported only when it is what AWS's model allows (`TagValue`: 0-256 characters of
letters, digits, white space (here only the space) and `_.:/=+@-`), at most MAX_VALUE characters, after surrounding
white space is stripped; each key has at most MAX_VALUES distinct values among a region's retained jobs (a value is
released when the last retained job carrying it leaves). A value refused for any of these is exported as "" (as an
untagged job) and counted by reason, so cost by tag still sums to the whole. A job whose tags cannot be read is
retried with backoff (a minute, doubling to an hour) while it is retained; until then it counts as untagged.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from exporter import errors
from exporter.model import Job

log = logging.getLogger(__name__)

# botocore's bedrock model: TagValue pattern `[a-zA-Z0-9\s._:/=+@-]*` (unanchored there; the whole value must match
# here), with its white space narrowed to the space: a tab or line break has no place in a label value
_TAG_VALUE = re.compile(r"[a-zA-Z0-9 ._:/=+@-]*")
MAX_VALUE = 128  # characters kept in a label value (AWS allows 256)
MAX_VALUES = 100  # distinct values per tag key among a region's retained jobs
MAX_TAGS = 200  # TagList: at most 200 tags
READS_PER_CYCLE = 20  # ListTagsForResource calls per job listing, so a first listing of many jobs spreads out
FIRST_RETRY, MAX_RETRY = 60.0, 3600.0
# Why a value was not exported (the `reason` label of the dropped counter)
INVALID, TOO_LONG, CARDINALITY = "invalid", "too_long", "cardinality"


@dataclass
class _Entry:
    tags: tuple[tuple[str, str], ...] | None = None  # allow-listed keys -> raw values, once read
    attempts: int = 0
    due: float = 0.0


class TagReader:
    """Reads each finished job's tags once, at most READS_PER_CYCLE a cycle, and keeps the allow-listed ones."""

    def __init__(
        self,
        keys: Sequence[str],
        on_dropped: Callable[[str], None],
        on_bad_answer: Callable[[], None] = lambda: None,
    ) -> None:
        self._keys = tuple(keys)
        self._on_dropped = on_dropped
        self._on_bad_answer = on_bad_answer
        self._entries: dict[str, _Entry] = {}
        # per key: the values the retained jobs carry, with how many carry each (released as jobs leave)
        self._values: dict[str, Counter[str]] = {key: Counter() for key in self._keys}

    def update(
        self, jobs: Iterable[Job], now: float, list_tags: Callable[[str], Any]
    ) -> dict[str, tuple[tuple[str, str], ...]]:
        """Read the tags due (finished jobs only), forget jobs no longer given; each job's exported tag values
        (every configured key, "" where absent or refused). `list_tags(arn)` is ListTagsForResource's answer."""
        finished = {job.arn: job for job in jobs if job.finished}
        for arn in [a for a in self._entries if a not in finished]:
            self._release(self._entries.pop(arn))
        reads = 0
        for arn in sorted(finished, key=lambda a: (finished[a].ended or now, a)):
            entry = self._entries.setdefault(arn, _Entry())
            if entry.tags is not None or entry.due > now or reads >= READS_PER_CYCLE:
                continue
            reads += 1
            entry.attempts += 1
            try:
                entry.tags = self._read(list_tags(arn))
            except Exception as exc:  # counted by the call recorder (outcome); retried, never raised into the cycle
                if isinstance(exc, errors.BadAnswerError):
                    self._on_bad_answer()
                if (
                    isinstance(exc, ClientError)
                    and exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"
                ):
                    entry.tags = ()  # the job is gone: untagged from now on
                else:
                    entry.due = now + min(FIRST_RETRY * 2 ** (entry.attempts - 1), MAX_RETRY)
                log.info("job %s: tags not read: %s", arn, errors.describe(exc))
        return {arn: self._exported(entry.tags or ()) for arn, entry in sorted(self._entries.items())}

    def _read(self, answer: Any) -> tuple[tuple[str, str], ...]:
        listed = answer.get("tags") if isinstance(answer, dict) else None
        if not isinstance(listed, list):
            raise errors.BadAnswerError("ListTagsForResource answer has no tags list")
        found: dict[str, str] = {}
        for tag in listed[:MAX_TAGS]:
            if not isinstance(tag, dict):
                continue
            key, value = tag.get("key"), tag.get("value")
            if isinstance(key, str) and key in self._keys and isinstance(value, str) and key not in found:
                found[key] = kept = self._clean(key, value)
                if kept:
                    self._values[key][kept] += 1
        return tuple(sorted(found.items()))

    def _release(self, entry: _Entry) -> None:
        for key, value in entry.tags or ():
            seen = self._values[key]
            if value and seen[value] > 0:
                seen[value] -= 1
                if not seen[value]:
                    del seen[value]

    def _clean(self, key: str, raw: str) -> str:
        """The value to export, or "" (counted) when it is refused; read once per job, so counted once per job."""
        value = raw.strip()
        if len(value) > MAX_VALUE:
            reason = TOO_LONG
        elif not _TAG_VALUE.fullmatch(value):
            reason = INVALID  # AWS refuses such values on write; an answer that has one is not trusted as a label
        elif value and value not in self._values[key] and len(self._values[key]) >= MAX_VALUES:
            reason = CARDINALITY
        else:
            return value
        self._on_dropped(reason)
        return ""

    def _exported(self, tags: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        given = dict(tags)
        return tuple((key, given.get(key, "")) for key in self._keys)
