"""Loading: YAML text -> environment expansion -> validated Config, every problem one line naming its field."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from exporter import yamlsafe
from exporter.config.base import ConfigError, format_location, join_path, read_config_file, validation_problems
from exporter.config.models import Config

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in strings, so secrets and per-pod values stay out of the file."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _ENV_RE.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, env, join_path(path, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def load_config_text(text: str, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Parse and validate YAML text; raises ConfigError with one line per problem."""
    try:
        raw = yamlsafe.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        kind = "refused" if isinstance(exc, yamlsafe.YamlBudgetError) else "invalid YAML"
        raise ConfigError([f"{where}: {kind}: {problem}"]) from None
    except UnicodeError:  # lone surrogates in a str handed in by code (files are decoded strictly)
        raise ConfigError([f"{source}: not valid Unicode text"]) from None
    if raw is None:
        raise ConfigError([f"{source}: the file is empty; at least 'targets' is required"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping, not {type(raw).__name__}"])
    problems: list[str] = []
    expanded = _expand_env(raw, os.environ if env is None else env, "", problems)
    if problems:
        raise ConfigError(problems)
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        problems = validation_problems(exc)
        partial = _look_further(expanded, exc, problems)
        raise ConfigError(problems, partial) from None


LOOK_FURTHER_ROUNDS = 3


def _look_further(data: dict[str, Any], exc: ValidationError, problems: list[str]) -> Config | None:
    """Report in one run what the first problems hide: checks of a whole section run only once its fields are valid
    (a bad period waits for an unknown key beside it). The mapping fields that failed are left out (so their defaults
    apply) and the rest validated again, a few rounds; new problems are added to `problems`. Returns the config once
    it validates without those fields, else None. Problems about the fields left out themselves are not added."""
    removed: set[str] = set()
    for _ in range(LOOK_FURTHER_ROUNDS):
        data = copy.deepcopy(data)
        dropped = False
        errors = [
            (error["type"], tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p)))
            for error in exc.errors(include_url=False)
        ]
        for kind, loc in errors:
            # a section "too short" only because its items failed, or missing, is left as it is
            consequence = any(len(other) > len(loc) and other[: len(loc)] == loc for _, other in errors)
            if kind == "missing" or consequence or not loc or not isinstance(loc[-1], str):
                continue
            if _drop(data, loc):
                removed.add(format_location(loc))
                dropped = True
        if not dropped:
            return None
        try:
            return Config.model_validate(data)
        except ValidationError as again:
            exc = again
            for problem in validation_problems(again):
                where = problem.split(": ", 1)[0]
                if problem not in problems and not any(
                    where == r or where.startswith((r + ".", r + "[")) for r in removed
                ):
                    problems.append(problem)
    return None


def _drop(data: Any, loc: tuple[int | str, ...]) -> bool:
    """Delete the mapping key at `loc` from nested dicts and lists; False when the path does not lead to one."""
    node: Any = data
    for part in loc[:-1]:
        if isinstance(part, int):
            if not (isinstance(node, list) and 0 <= part < len(node)):
                return False
        elif not (isinstance(node, dict) and part in node):
            return False
        node = node[part]
    if isinstance(node, dict) and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises ConfigError with one line per problem."""
    return load_config_text(read_config_file(path), str(path), env)


def json_schema() -> str:
    """The JSON Schema of the config file, as committed in docs/config.schema.json."""
    schema = Config.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "bedrock-batch-exporter configuration"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
