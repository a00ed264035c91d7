"""What every part of the configuration shares: errors with field paths, durations, the strict model base, and
reading a file safely. The web-config file (exporter.webconfig) is built from these too."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from stat import S_ISREG
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one line per problem. `partial` is the config as it
    validates with the offending fields left out, when it does: for the checks that need a whole config (preflight)."""

    def __init__(self, problems: Sequence[str], partial: Any = None) -> None:
        lines = tuple(_one_line(p) for p in problems)
        super().__init__("; ".join(lines))
        self.problems = lines
        self.partial = partial


def parse_duration(value: object) -> float:
    """Seconds from `90`, `90s`, `5m`, `1h`, `500ms` or `1d`: finite and not negative."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 60s, 5m, 1h")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        else:
            raise ValueError(f"invalid duration {value!r}: use a number of seconds or a string like 60s, 5m, 1h")
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_seconds(seconds: float) -> str:
    """86400 -> '1d', 10830 -> '3h30s', 0.5 -> '500ms', 1.5 -> '1.5s', 0 -> '0s'."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms" if seconds else "0s"
    if seconds != int(seconds):
        return f"{seconds:g}s"
    out = ""
    rest = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            out += f"{count}{unit}"
    return out


def duration_bounds(low: float, high: float, *, above: bool = False, zero: bool = False) -> AfterValidator:
    """A check that a duration lies in [low, high] ((low, high] when `above`); `zero` also lets 0 mean "off"."""

    def check(seconds: float) -> float:
        if zero and seconds == 0:
            return seconds
        too_low = seconds <= low if above else seconds < low
        if too_low or seconds > high:
            lowest = f"more than {format_seconds(low)}" if above else f"at least {format_seconds(low)}"
            off = " (or 0 for never)" if zero else ""
            raise ValueError(f"must be {lowest} and at most {format_seconds(high)}{off}, got {format_seconds(seconds)}")
        return seconds

    return AfterValidator(check)


DURATION_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$"},
        ],
        "description": "seconds, or a string like 500ms, 60s, 5m, 1h, 1d",
    }
)
Duration = Annotated[float, BeforeValidator(parse_duration), DURATION_SCHEMA]

DAY = 86400.0
# Schedules: at least a second apart (a faster loop only burns API calls), at most a day (a longer one is a typo).
Interval = Annotated[Duration, duration_bounds(1, DAY)]
# Network timeouts: 0 would fail every call; ten minutes is far beyond any useful wait.
Timeout = Annotated[Duration, duration_bounds(0, 600, above=True)]


# A mapping key the user writes (a dimension, model id, header name): an empty one names nothing and is refused.
Key = Annotated[str, Field(min_length=1)]


class StrictModel(BaseModel):
    # allow_inf_nan=False: `.nan` or `.inf` in any number field is refused (a NaN interval would never fire again).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def check_url(value: str | None) -> str | None:
    """An http(s) URL with a host, a port in 1-65535 if given, and no user:password part; never echoed in errors.

    The URL is printed on the status page and in logs, so credentials in it would leak: they are refused.
    """
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL (a port must be a number in 1-65535)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise ValueError(
            "credentials in the URL (user:password@) are refused: they would show in logs and on the status page"
        )
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("the port must be in 1-65535")
    return value


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def format_location(loc: Sequence[int | str]) -> str:
    """('targets', 1, 'regions', 0) -> 'targets[1].regions[0]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = join_path(out, part)
    return out or "<root>"


def validation_problems(exc: ValidationError) -> list[str]:
    errors = exc.errors(include_url=False)
    # Pydantic adds the validator kind ("function-after[...]") to model-level locations; users need the field.
    locs = [tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p)) for err in errors]
    problems = []
    for err, loc in zip(errors, locs, strict=True):
        if err["type"] == "too_short" and any(len(o) > len(loc) and o[: len(loc)] == loc for o in locs):
            continue  # "too few items" only because items failed: the item errors say more
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["loc"][-1:] == ("[key]",):  # a mapping key failed (`Key`): pydantic puts the key itself last
            message = "an empty key names nothing"
        elif err["type"] == "too_short":
            message = f"needs at least {err.get('ctx', {}).get('min_length', 1)} item(s)"
        where = format_location(tuple(p for p in loc if p != ""))  # "" is where an empty key would sit
        # Model-level checks name the field inside the model ("insights[1].query: ..."): join the two paths.
        if inner := _INNER_FIELD.match(message):
            where = inner.group(1) if where == "<root>" else f"{where}.{inner.group(1)}"
            message = inner.group(2)
        problems.append(f"{where}: {message}")
    return problems


_INNER_FIELD = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*): (.+)$", re.DOTALL)


def _one_line(problem: str) -> str:
    """A problem as one printable line: control characters (a key with a newline, say) are shown escaped."""
    return _CONTROL_RE.sub(lambda m: repr(m.group(0))[1:-1], problem)


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# Real configs are a few KiB; the cap keeps a wrong path (a log file, a disk image) from being read into memory.
MAX_CONFIG_BYTES = 1024 * 1024


def read_config_file(path: str | Path, what: str = "config file") -> str:
    """The text of a config file: a regular file of at most MAX_CONFIG_BYTES in UTF-8; raises ConfigError.

    Opened without blocking and checked before reading, so a FIFO, a device such as /dev/zero or a directory is
    refused at once instead of hanging or reading forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read {what}: {exc.strerror or exc}"]) from None
    try:
        info = os.fstat(fd)
        if not S_ISREG(info.st_mode):
            raise ConfigError([f"{path}: not a regular file; the {what} must be a file (symbolic links are followed)"])
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{path}: the {what} is larger than {MAX_CONFIG_BYTES // 1024} KiB"])
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:  # read at most cap + 1 bytes, even if the file grows meanwhile
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read {what}: {exc.strerror or exc}"]) from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: the {what} is larger than {MAX_CONFIG_BYTES // 1024} KiB"])
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: {what} is not UTF-8 text"]) from None
