"""Hypothesis strategies generated from botocore's service models: AWS answers as the model allows them, and more.

`answers(service, shape)` builds values for an output shape: structures with optional members randomly missing,
strings including enum values the model does not list (AWS adds values), timestamps, doubles including NaN and
infinities, lists (empty too), maps. `overrides` replaces the strategy for a member name or a shape name, so a test
can pin ids or the values that matter to it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import botocore.loaders
import botocore.model
from hypothesis import strategies as st

# A few values outside any model's enum, plus free text: an answer may carry a value our SDK does not know.
UNKNOWN_ENUM_VALUES = st.one_of(
    st.sampled_from(["Paused", "Unknown", "", "complete", "NEW_STATUS"]), st.text(max_size=12)
)
MAX_LIST = 4
MAX_DEPTH = 6


@functools.cache
def service_model(service: str) -> Any:
    """botocore's service model, loaded through its data Loader."""
    return botocore.model.ServiceModel(botocore.loaders.create_loader().load_service_model(service, "service-2"))


def shape(service: str, name: str) -> Any:
    return service_model(service).shape_for(name)


def timestamps() -> st.SearchStrategy[datetime]:
    """Timezone-aware datetimes, as botocore parses them, across the whole representable range."""
    return st.datetimes(timezones=st.just(UTC))


def strings(model: Any) -> st.SearchStrategy[str]:
    if model.enum:
        return st.one_of(st.sampled_from(list(model.enum)), UNKNOWN_ENUM_VALUES)
    return st.text(max_size=min(int(model.metadata.get("max", 40)), 40))


def from_shape(
    model: Any, overrides: Mapping[str, st.SearchStrategy[Any]] | None = None, depth: int = 0, member: str = ""
) -> st.SearchStrategy[Any]:
    """Values of a botocore shape (see the module docstring); `member` is the name it is reached by."""
    overrides = overrides or {}
    if member in overrides:
        return overrides[member]
    if model.name in overrides:
        return overrides[model.name]
    kind = model.type_name
    if kind == "structure":
        if depth >= MAX_DEPTH:
            return st.just({})
        required = set(model.required_members)
        members = {name: from_shape(sub, overrides, depth + 1, name) for name, sub in model.members.items()}
        return st.fixed_dictionaries(
            {n: s for n, s in members.items() if n in required},
            optional={n: s for n, s in members.items() if n not in required},
        )
    if kind == "list":
        return st.lists(from_shape(model.member, overrides, depth + 1, member), max_size=MAX_LIST)
    if kind == "map":
        return st.dictionaries(
            from_shape(model.key, overrides, depth + 1),
            from_shape(model.value, overrides, depth + 1),
            max_size=MAX_LIST,
        )
    if kind == "string":
        return strings(model)
    if kind in ("integer", "long"):
        return st.integers(
            min_value=int(model.metadata.get("min", -(2**63))), max_value=int(model.metadata.get("max", 2**63 - 1))
        )
    if kind in ("double", "float"):
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return timestamps()
    if kind == "blob":
        return st.binary(max_size=16)
    return st.none()


def answers(
    service: str, name: str, overrides: Mapping[str, st.SearchStrategy[Any]] | None = None
) -> st.SearchStrategy[Any]:
    """Values of the named shape of `service` (e.g. "cloudwatch", "GetMetricDataOutput")."""
    return from_shape(shape(service, name), overrides)


def status_codes() -> st.SearchStrategy[str]:
    """Every per-result `StatusCode` the model lists, and some it does not."""
    return st.one_of(st.sampled_from(list(shape("cloudwatch", "StatusCode").enum)), UNKNOWN_ENUM_VALUES)
