"""Which price applies to a model ID as CloudWatch or the job API reports it (pure).

Accounts see more than bare model IDs: cross-region inference-profile IDs put a geography before the model ID
(`us.anthropic.claude-...`; the set of geographies grows, so any lower-case first segment is tried), and ARNs name a
foundation model or an inference profile (`arn:aws:bedrock:<region>::foundation-model/<model id>`,
`arn:aws:bedrock:<region>:<account>:inference-profile/<profile id>`). Application inference-profile ARNs do not name
their model: they resolve only through `pricing.aliases`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from exporter.model import Price

_ARN_RESOURCE = re.compile(r"^arn:aws[a-z-]*:bedrock:[^:]*:[^:]*:(foundation-model|inference-profile)/(.+)$")
_GEOGRAPHY = re.compile(r"^[a-z]{2,10}\.(?=[a-z0-9-]+\.)")


def candidates(model_id: str) -> Iterator[str]:
    """The IDs to look up for `model_id`, most specific first."""
    yield model_id
    match = _ARN_RESOURCE.match(model_id)
    resource = match.group(2) if match else model_id
    if resource != model_id:
        yield resource
    stripped = _GEOGRAPHY.sub("", resource, count=1)
    if stripped != resource:
        yield stripped


def resolve(model_id: str, table: Mapping[str, Price]) -> Price | None:
    """The price for `model_id` (labelled with `model_id` as given), or None when nothing in the table applies."""
    for candidate in candidates(model_id):
        found = table.get(candidate)
        if found is not None:
            return found if found.model_id == model_id else replace(found, model_id=model_id)
    return None


def with_aliases(prices: Iterable[Price], aliases: Mapping[str, str]) -> tuple[Price, ...]:
    """The table plus an entry per alias whose target has a price (directly or by the rules above)."""
    table = {p.model_id: p for p in prices}
    extra = {}
    for alias, target in sorted(aliases.items()):
        found = resolve(target, table)
        if found is not None and alias not in table:
            extra[alias] = replace(found, model_id=alias)
    return tuple(sorted({**table, **extra}.values(), key=lambda p: p.model_id))
