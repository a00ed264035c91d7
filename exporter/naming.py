"""CloudWatch names -> Prometheus and OpenTelemetry names, by YACE's naming rules (pure functions).

The rules are those of YACE's `pkg/promutil` (prometheus-community/yet-another-cloudwatch-exporter: `BuildMetricName`,
`PromString`, `sanitize`), re-implemented here. One deliberate difference: a character YACE leaves in place that
Prometheus does not allow (e.g. `$`, `#`, non-ASCII letters) becomes `_` here, where YACE would emit an invalid name
or drop the dimension.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Characters YACE's PromString and sanitize turn into `_`; `%` becomes `_percent`.
_YACE_UNDERSCORED = frozenset(" ,\t/\\.-:=@<>()\u201c")
_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def _valid(text: str) -> str:
    return _INVALID_NAME_CHARS.sub("_", text)


def snake_case(text: str) -> str:
    """`NumberOfRecordsPendingProcessing` -> `number_of_records_pending_processing`, by YACE's PromString.

    An underscore goes before an upper-case letter that follows a lower-case letter or a digit (`5XX` -> `5_xx`;
    `CPUUtilization` stays one word, `cpuutilization`); `%` becomes `_percent`; punctuation becomes `_`.
    """
    out: list[str] = []
    prev = ""
    for char in text:
        if char in _YACE_UNDERSCORED:
            out.append("_")
        elif char == "%":
            out.append("_percent")
        else:
            if char.isupper() and (prev.islower() or prev.isdecimal()):
                out.append("_")
            out.append(char.lower())
        prev = char
    return _valid("".join(out))


def _namespace(namespace: str) -> str:
    """YACE's namespace part: lower-cased, sanitised, one leading `_` dropped (`/aws/sagemaker/TrainingJobs`)."""
    return snake_case(namespace.lower()).removeprefix("_")


def _metric(namespace_part: str, metric: str) -> str:
    """YACE's metric part: a prefix repeating the namespace's words (Glue's `glue.driver...`) is dropped."""
    name = snake_case(metric)
    for word in namespace_part.split("_"):
        name = name.removeprefix(word)
    return name.removeprefix("_")


@lru_cache(maxsize=4096)
def metric_name(namespace: str, metric: str, statistic: str) -> str:
    """`aws_<namespace>_<metric>_<statistic>` as YACE builds it, e.g. aws_bedrock_batch_..._average."""
    ns = _namespace(namespace)
    prefix = ns if ns.startswith("aws") else "aws_" + ns
    name = f"{prefix}_{_metric(ns, metric)}"
    return f"{name}_{snake_case(statistic)}" if statistic else name


@lru_cache(maxsize=4096)
def otel_metric_name(namespace: str, metric: str, statistic: str) -> str:
    """The OpenTelemetry name from the same parts, dot-separated where the namespace has `/`.

    `aws.bedrock.batch.number_of_records_pending_processing.maximum`; empty parts and their edge `_` are dropped.
    """
    ns = _namespace(namespace)
    words = [snake_case(segment.lower()) for segment in namespace.split("/")]
    if not ns.startswith("aws"):
        words.insert(0, "aws")
    parts = [*words, _metric(ns, metric), snake_case(statistic)]
    return ".".join(p.strip("_") for p in parts if p.strip("_"))


@lru_cache(maxsize=4096)
def dimension_label(dimension: str) -> str:
    """`ModelId` -> `dimension_ModelId`: case kept, YACE's sanitising, other disallowed characters become `_`."""
    out = ["_" if char in _YACE_UNDERSCORED else "_percent" if char == "%" else char for char in dimension]
    return "dimension_" + _valid("".join(out))


def tag_label(key: str) -> str:
    """The label a job tag key becomes (jobs.tag_labels): `tag_` and the key with every character outside
    [a-zA-Z0-9_] as `_`."""
    return "tag_" + _valid(key)
