"""The checks `run` makes beyond the config's own validation, shared with `check-config` and reloads."""

from __future__ import annotations

import importlib.util

from exporter.config import Config, ConfigError
from exporter.families import config_collisions
from exporter.webconfig import load_web_config

GRPC_PACKAGE = "opentelemetry.exporter.otlp.proto.grpc"


def preflight(config: Config, listen_address: str | None = None) -> list[str]:
    """Problems `run` would refuse to start with, one line each naming the field; empty when it would start."""
    problems = config_problems(config)
    field = "--listen-address" if listen_address else "server.listen_address"
    problems += _listen_address(listen_address or config.server.listen_address, field)
    if config.server.web_config_file:
        try:
            load_web_config(config.server.web_config_file)
        except ConfigError as exc:
            problems += [f"server.web_config_file: {problem}" for problem in exc.problems]
    if "otlp" in config.enabled_sinks and config.otlp.resolved_protocol() == "grpc" and not _importable(GRPC_PACKAGE):
        problems.append(
            "otlp.protocol: grpc needs the gRPC exporter, which is not installed: "
            "pip install 'bedrock-batch-exporter[otlp-grpc]'"
        )
    return problems


def config_problems(config: Config) -> list[str]:
    """What a valid config still cannot do, checked on every load including reloads: families exported twice.

    (Kept out of `exporter.config`, which knows no output format; one printable line per problem, as ConfigError's.)
    """
    return list(ConfigError(config_collisions(config)).problems)


def _listen_address(value: str, field: str) -> list[str]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return [f"{field}: {value!r} is not HOST:PORT"]
    if not 1 <= int(port) <= 65535:
        return [f"{field}: port {port} is outside 1-65535"]
    if host.startswith("[") != host.endswith("]"):
        return [f"{field}: {value!r} has an unclosed IPv6 bracket"]
    return []


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package raises instead of answering None
        return False
