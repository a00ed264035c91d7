"""Request conformance: every AWS request the test suite sends is checked against botocore's input shapes.

botocore's own validator checks required members, types and minimums only; this also checks maximum lengths and
item counts, value ranges, enums and patterns, from the same service models AWS publishes. It is a test-only hook:
production keeps client-side validation off (exporter/aws/session.py). See docs/testing.md.

Interception point: a `before-parameter-build` handler appended to botocore's `BUILTIN_HANDLERS`, the list every
botocore Session registers when it is created, so every client in the process (the exporter's, the tests' own,
STS assume-role clients inside credential providers) is covered without touching the exporter. Subprocesses started
by tests load it through `tests/conformance/site/sitecustomize.py` (tests/conftest.py puts it on PYTHONPATH) and
report to files that the session reads at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPORT_DIR_ENV = "CONFORMANCE_REPORT_DIR"
_EXPORTER_AGENT = "bedrock-batch-exporter/"
# Tests that send invalid requests on purpose, to check a fake's server-side validation, by node id (parameters
# stripped). Their own clients' requests are counted, not checked; the exporter's requests are checked everywhere.
# (botocore's merged client config does not keep `parameter_validation`, so a handler cannot tell such clients apart.)
DELIBERATE_PROBES = {
    "tests/integration/test_jobs_fake.py::test_invalid_list_requests_are_validation_errors": "the fake's validation",
}


@dataclass(frozen=True)
class Violation:
    """One request member that AWS's model does not allow."""

    operation: str  # "service:Operation"
    path: str  # member path, e.g. MetricDataQueries[0].Expression
    problem: str
    test: str  # the pytest node that was running (PYTEST_CURRENT_TEST), or ""


@dataclass
class Record:
    """What the hook saw in this process."""

    checked: Counter[str] = field(default_factory=Counter)  # "service:Operation" -> requests checked
    violations: list[Violation] = field(default_factory=list)
    unchecked_patterns: Counter[str] = field(default_factory=Counter)  # pattern `re` cannot compile -> values
    deliberate: Counter[str] = field(default_factory=Counter)  # requests from clients with validation turned off
    refused: Counter[str] = field(default_factory=Counter)  # requests botocore's own validator stops (never sent)
    services: set[str] = field(default_factory=set)  # botocore service names whose requests were checked


RECORD = Record()
_LOCK = threading.Lock()
_CAPTURE = threading.local()
_PATTERNS: dict[str, re.Pattern[str] | None] = {}


# Patterns are matched whole. Smithy says a pattern is not implicitly anchored, but AWS's services answer a value
# with an unwanted character "failed to satisfy constraint: Member must satisfy regular expression pattern" even
# when a substring matches (e.g. an IAM role name with a space against [\w+=,.@-]+): the stricter reading.
def _pattern(text: str) -> re.Pattern[str] | None:
    """The compiled model pattern: Python's `re`, else the Unicode-aware `regex` package (`\\p{L}`), else None."""
    if text not in _PATTERNS:
        try:
            _PATTERNS[text] = re.compile(text)
        except re.error:
            try:
                import regex

                _PATTERNS[text] = regex.compile(text)
            except Exception:
                _PATTERNS[text] = None
    return _PATTERNS[text]


def check(shape: Any, value: Any, path: str, problems: list[tuple[str, str]], unchecked: Counter[str]) -> None:
    """Append (path, problem) for every way `value` breaks botocore `shape`, recursively."""
    kind = shape.type_name
    meta: Mapping[str, Any] = shape.metadata
    if kind == "structure":
        if not isinstance(value, Mapping):
            problems.append((path, f"expected a structure, got {type(value).__name__}"))
            return
        problems.extend(
            (f"{path}.{name}".lstrip("."), "required member missing")
            for name in shape.required_members
            if name not in value
        )
        for name, member in value.items():
            sub = f"{path}.{name}".lstrip(".")
            if name not in shape.members:
                problems.append((sub, f"not a member of {shape.name}"))
            else:
                check(shape.members[name], member, sub, problems, unchecked)
        return
    if kind == "list":
        if not isinstance(value, list | tuple):
            problems.append((path, f"expected a list, got {type(value).__name__}"))
            return
        _size(len(value), meta, path, "items", problems)
        for i, item in enumerate(value):
            check(shape.member, item, f"{path}[{i}]", problems, unchecked)
        return
    if kind == "map":
        if not isinstance(value, Mapping):
            problems.append((path, f"expected a map, got {type(value).__name__}"))
            return
        _size(len(value), meta, path, "entries", problems)
        for key, item in value.items():
            check(shape.key, key, f"{path}<key>", problems, unchecked)
            check(shape.value, item, f"{path}[{key!r}]", problems, unchecked)
        return
    if kind == "string":
        if not isinstance(value, str):
            problems.append((path, f"expected a string, got {type(value).__name__}"))
            return
        _size(len(value), meta, path, "characters", problems)  # Smithy length: Unicode scalar values, as len()
        if shape.enum and value not in shape.enum:
            problems.append((path, f"{value[:40]!r} is not one of {shape.name}'s values {list(shape.enum)}"))
        if (text := meta.get("pattern")) is not None:
            compiled = _pattern(text)
            if compiled is None:
                unchecked[text] += 1
            elif not compiled.fullmatch(value):
                problems.append((path, f"{value[:40]!r} does not match the pattern {text!r}"))
        return
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append((path, f"expected an integer, got {type(value).__name__}"))
            return
        _range(value, meta, path, problems)
        return
    if kind in ("double", "float"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            problems.append((path, f"expected a number, got {type(value).__name__}"))
            return
        _range(value, meta, path, problems)
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            problems.append((path, f"expected a boolean, got {type(value).__name__}"))
        return
    if kind == "timestamp":
        if not isinstance(value, dt.datetime | dt.date | str | int | float) or isinstance(value, bool):
            problems.append((path, f"expected a timestamp, got {type(value).__name__}"))
        return
    if kind == "blob":
        if isinstance(value, bytes | bytearray | str):
            _size(len(value), meta, path, "bytes", problems)
        return
    # documents and anything newer: botocore's model gives no constraint we check


def _size(size: int, meta: Mapping[str, Any], path: str, unit: str, problems: list[tuple[str, str]]) -> None:
    if "min" in meta and size < meta["min"]:
        problems.append((path, f"{size} {unit}, fewer than the minimum {meta['min']}"))
    if "max" in meta and size > meta["max"]:
        problems.append((path, f"{size} {unit}, more than the maximum {meta['max']}"))


def _range(value: float, meta: Mapping[str, Any], path: str, problems: list[tuple[str, str]]) -> None:
    if "min" in meta and value < meta["min"]:
        problems.append((path, f"{value} is below the minimum {meta['min']}"))
    if "max" in meta and value > meta["max"]:
        problems.append((path, f"{value} is above the maximum {meta['max']}"))


def check_request(operation_model: Any, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(member path, problem) for each way `params` breaks the operation's input shape; patterns `re` cannot
    compile are counted in RECORD.unchecked_patterns."""
    problems: list[tuple[str, str]] = []
    shape = operation_model.input_shape
    if shape is None:
        if params:
            problems.append(("", f"{operation_model.name} takes no parameters"))
        return problems
    unchecked: Counter[str] = Counter()
    check(shape, params, "", problems, unchecked)
    with _LOCK:
        RECORD.unchecked_patterns.update(unchecked)
    return problems


def _on_request(params: Mapping[str, Any], model: Any, context: Mapping[str, Any] | None = None, **_: Any) -> None:
    """botocore `before-parameter-build` handler: check the request, record what it breaks."""
    operation = f"{model.service_model.endpoint_prefix}:{model.name}"
    config = (context or {}).get("client_config")
    by_exporter = _EXPORTER_AGENT in str(getattr(config, "user_agent_extra", "") or "")
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    if not by_exporter and test.split("[", 1)[0] in DELIBERATE_PROBES:
        with _LOCK:
            RECORD.deliberate[operation] += 1
        return
    if not by_exporter and model.input_shape is not None:
        from botocore.validate import ParamValidator

        # With validation on (tests' clients by default) botocore raises before sending: not a request AWS sees.
        # The exporter turns validation off, so its requests are always checked here.
        if ParamValidator().validate(params, model.input_shape).has_errors():
            with _LOCK:
                RECORD.refused[operation] += 1
            return
    queries = params.get("MetricDataQueries")
    if queries is not None and hasattr(queries, "materialize"):
        # the planner's queries travel as JSON text to the lean serializer: check what that text sends
        params = {**params, "MetricDataQueries": queries.materialize()}
    problems = check_request(model, params)
    found = [Violation(operation, path, problem, test) for path, problem in problems]
    captured: list[Violation] | None = getattr(_CAPTURE, "violations", None)
    with _LOCK:
        RECORD.checked[operation] += 1
        RECORD.services.add(model.service_model.service_name)
        if captured is not None:
            captured.extend(found)
        else:
            RECORD.violations.extend(found)
    if found and captured is None and (directory := os.environ.get(REPORT_DIR_ENV)) and os.getpid() != _MAIN_PID:
        _append(Path(directory), [asdict(v) for v in found], "violations")


@contextlib.contextmanager
def capture() -> Iterator[list[Violation]]:
    """Violations of requests sent by this thread go to the yielded list instead of failing the run (for tests of
    the harness itself)."""
    found: list[Violation] = []
    _CAPTURE.violations = found
    try:
        yield found
    finally:
        del _CAPTURE.violations


_MAIN_PID = -1  # the pytest process, which reports RECORD itself; set by install(main=True)


def install(main: bool = False) -> None:
    """Make every botocore Session created from now on check its requests (idempotent)."""
    global _MAIN_PID
    from botocore import handlers

    if main:
        _MAIN_PID = os.getpid()
    spec = ("before-parameter-build", _on_request)
    if spec not in handlers.BUILTIN_HANDLERS:
        handlers.BUILTIN_HANDLERS.append(spec)


def _append(directory: Path, rows: list[dict[str, Any]], kind: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{kind}-{os.getpid()}.jsonl").open("a", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")


def write_subprocess_stats() -> None:
    """At a subprocess' exit: what it checked, for the session summary (violations were written as they came)."""
    directory = os.environ.get(REPORT_DIR_ENV)
    if not directory or os.getpid() == _MAIN_PID:
        return
    with _LOCK:
        row = {
            "checked": dict(RECORD.checked),
            "unchecked_patterns": dict(RECORD.unchecked_patterns),
            "deliberate": dict(RECORD.deliberate),
            "refused": dict(RECORD.refused),
            "services": sorted(RECORD.services),
        }
    if any(row.values()):
        _append(Path(directory), [row], "stats")


def merged(directory: Path | None) -> Record:
    """This process' RECORD plus what subprocesses wrote to `directory`."""
    total = Record()
    with _LOCK:
        total.checked.update(RECORD.checked)
        total.violations.extend(RECORD.violations)
        total.unchecked_patterns.update(RECORD.unchecked_patterns)
        total.deliberate.update(RECORD.deliberate)
        total.refused.update(RECORD.refused)
        total.services |= RECORD.services
    if directory is not None and directory.is_dir():
        for path in sorted(directory.glob("violations-*.jsonl")):
            total.violations.extend(Violation(**json.loads(line)) for line in path.read_text().splitlines() if line)
        for path in sorted(directory.glob("stats-*.jsonl")):
            for line in path.read_text().splitlines():
                row = json.loads(line)
                total.checked.update(row["checked"])
                total.unchecked_patterns.update(row["unchecked_patterns"])
                total.deliberate.update(row["deliberate"])
                total.refused.update(row["refused"])
                total.services.update(row["services"])
    return total


def uncompilable_patterns(services: set[str]) -> set[str]:
    """The patterns in these services' models that Python's `re` cannot compile."""
    import botocore.loaders

    loader = botocore.loaders.create_loader()
    found: set[str] = set()
    for service in services:
        for shape in loader.load_service_model(service, "service-2")["shapes"].values():
            if (text := shape.get("pattern")) is not None and _pattern(text) is None:
                found.add(text)
    return found


def summary(record: Record) -> list[tuple[str, bool]]:
    """(line, is a violation) for the end of the test run: what was checked, what could not be, what broke."""
    lines = [
        (
            f"request conformance: {sum(record.checked.values())} requests of {len(record.checked)} operations "
            "checked against botocore's input shapes (lengths, item counts, ranges, enums, patterns)",
            False,
        )
    ]
    uncompilable = sorted(uncompilable_patterns(record.services))
    lines.append(
        (
            f"request conformance: skipped {len(uncompilable)} model patterns Python's re cannot compile "
            f"(a Unicode-aware engine such as `regex` would): {sum(record.unchecked_patterns.values())} values "
            f"sent unchecked; patterns: {', '.join(uncompilable) or 'none'}",
            False,
        )
    )
    if record.deliberate:
        lines.append(
            (
                f"request conformance: {sum(record.deliberate.values())} requests of tests listed in "
                "tests/conformance DELIBERATE_PROBES not checked (invalid on purpose)",
                False,
            )
        )
    for op, where, problem, test in sorted({(v.operation, v.path, v.problem, v.test) for v in record.violations}):
        lines.append((f"request conformance: {op} {where}: {problem} (in {test or 'no test'})", True))
    return lines
