"""Logging set-up: plain text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from exporter.errors import describe, redact_url


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RedactingFilter(logging.Filter):
    """Removes credentials from URLs in every record (a library may log an endpoint taken from the environment)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_url(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


class CredentialRefreshFilter(logging.Filter):
    """botocore's "Refreshing temporary credentials failed" warning, with its ~25-line traceback, only at debug.

    botocore.credentials.RefreshableCredentials._protected_refresh logs it with `exc_info=True` on every failed
    refresh, without naming the target. A mandatory refresh re-raises, and the poller logs that failure as one line
    with the target and the cause, so this record is dropped; an advisory one (botocore keeps the current keys)
    stays as one line with the cause appended.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or not str(record.msg).startswith("Refreshing temporary credentials failed"):
            return True
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        if record.args and record.args[0] == "mandatory":  # type: ignore[index]
            return False
        exc = record.exc_info[1]
        cause = describe(exc) if exc is not None else "unknown cause"
        record.msg, record.args = f"{record.getMessage().rstrip('.')}: {cause}", ()
        record.exc_info, record.exc_text = None, None
        return True


def quiet_credential_refresh() -> None:
    """Install CredentialRefreshFilter on botocore's credentials logger (once)."""
    logger = logging.getLogger("botocore.credentials")
    if not any(isinstance(f, CredentialRefreshFilter) for f in logger.filters):
        logger.addFilter(CredentialRefreshFilter())


def setup(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # botocore logs request details at DEBUG; keep it quiet unless asked for explicitly.
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
