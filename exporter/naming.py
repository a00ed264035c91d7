"""CloudWatch names -> Prometheus names and labels, YACE-compatible (pure functions)."""

from __future__ import annotations

import re
from functools import lru_cache

_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_REPEATED_UNDERSCORES = re.compile(r"_+")


def snake_case(text: str) -> str:
    """`NumberOfRecordsPendingProcessing` -> `number_of_records_pending_processing`, as YACE does it.

    An underscore goes before an upper-case letter that follows a lower-case one; `CPUUtilization` stays one word
    (`cpuutilization`) so YACE users' queries keep matching.
    """
    out: list[str] = []
    prev = ""
    for char in text:
        if char.isupper() and prev.islower():
            out.append("_")
        out.append(char.lower())
        prev = char
    return _REPEATED_UNDERSCORES.sub("_", _INVALID_NAME_CHARS.sub("_", "".join(out)))


@lru_cache(maxsize=4096)
def metric_name(namespace: str, metric: str, statistic: str) -> str:
    """`aws_<namespace>_<metric>_<statistic>`, e.g. aws_bedrock_batch_number_of_records_pending_processing_average."""
    ns = namespace.removeprefix("AWS/")
    parts = [snake_case(ns), snake_case(metric), snake_case(statistic.replace(".", "_"))]
    name = "aws_" + "_".join(p.strip("_") for p in parts if p.strip("_"))
    return _REPEATED_UNDERSCORES.sub("_", name)


@lru_cache(maxsize=4096)
def dimension_label(dimension: str) -> str:
    """`ModelId` -> `dimension_ModelId`; characters Prometheus does not allow become `_`."""
    return "dimension_" + _INVALID_NAME_CHARS.sub("_", dimension)
