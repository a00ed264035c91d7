"""Prometheus exporter for Amazon Bedrock batch inference."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bedrock-batch-exporter")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
