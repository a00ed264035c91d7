"""The configuration: `base` (errors, durations, the strict model, safe file reading), `namespaces` (per-namespace
defaults as one table), `models` (the validated, frozen settings), `load` (YAML text to Config)."""

from exporter.config.base import (
    MAX_CONFIG_BYTES,
    ConfigError,
    StrictModel,
    format_location,
    parse_duration,
    read_config_file,
    validation_problems,
)
from exporter.config.load import json_schema, load_config, load_config_text
from exporter.config.models import (
    DEFAULT_PRICES,
    AwsConfig,
    CloudWatchPricing,
    Config,
    JobsConfig,
    ModelPrice,
    NamespaceConfig,
    OtlpConfig,
    PricingConfig,
    ServerConfig,
    TargetConfig,
    period_problem,
    window_reach,
)
from exporter.config.namespaces import NAMESPACE_DEFAULTS, NamespaceDefaults, defaults_for

__all__ = [
    "DEFAULT_PRICES",
    "MAX_CONFIG_BYTES",
    "NAMESPACE_DEFAULTS",
    "AwsConfig",
    "CloudWatchPricing",
    "Config",
    "ConfigError",
    "JobsConfig",
    "ModelPrice",
    "NamespaceConfig",
    "NamespaceDefaults",
    "OtlpConfig",
    "PricingConfig",
    "ServerConfig",
    "StrictModel",
    "TargetConfig",
    "defaults_for",
    "format_location",
    "json_schema",
    "load_config",
    "load_config_text",
    "parse_duration",
    "period_problem",
    "read_config_file",
    "validation_problems",
    "window_reach",
]
