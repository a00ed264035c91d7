"""Classify AWS failures into a few outcomes users can alert on, with one-line descriptions."""

from __future__ import annotations

import re

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

SUCCESS = "success"
THROTTLED = "throttled"
ACCESS_DENIED = "access_denied"
EXPIRED_CREDENTIALS = "expired_credentials"
NO_CREDENTIALS = "no_credentials"
VALIDATION = "validation"
CLIENT_ERROR = "client_error"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
BAD_ANSWER = "bad_answer"
OTHER = "other"

# scheme://userinfo@ -> scheme://; greedy up to the last "@" before the host ends, as urllib.parse.urlsplit reads it
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#]*@")

_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "ProvisionedThroughputExceededException",
}
_ACCESS = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "AuthFailure",
    "SignatureDoesNotMatch",
    "OptInRequired",
}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_VALIDATION = {
    "ValidationError",
    "ValidationException",
    "InvalidParameterValue",
    "InvalidParameterCombination",
}


class BadAnswerError(Exception):
    """AWS answered, but with something we cannot use (malformed, inconsistent or endless).

    Messages start with the operation's name, e.g. "GetMetricData answer has no MetricDataResults list".
    """

    @property
    def operation(self) -> str:
        return str(self).split(" ", 1)[0].rstrip(":")


def classify_code(code: str, status: int) -> str:
    """Outcome for an AWS error code and HTTP status."""
    if code in _THROTTLING or status == 429:
        return THROTTLED
    if code in _EXPIRED:
        return EXPIRED_CREDENTIALS
    if code in _ACCESS or status == 403:
        return ACCESS_DENIED
    if code in _VALIDATION:
        return VALIDATION
    if status >= 500:
        return SERVER_ERROR
    return CLIENT_ERROR


def classify(exc: BaseException) -> str:
    """Outcome for an exception raised while calling AWS."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return classify_code(str(error.get("Code", "")), status)
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return TIMEOUT
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        return CONNECTION_ERROR
    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, BadAnswerError | ResponseParserError):
        return BAD_ANSWER
    if isinstance(exc, BotoCoreError | OSError):
        return CONNECTION_ERROR
    return OTHER


def redact_url(text: str) -> str:
    """`text` with the user info (credentials) of every URL in it removed: http://user:pass@host -> http://host."""
    return _USERINFO.sub(r"\1", text)


def describe(exc: BaseException) -> str:
    """A one-line description without request bodies or credentials (URL user info is removed)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = str(error.get("Message", "")).splitlines()[0] if error.get("Message") else ""
        operation = getattr(exc, "operation_name", "") or "call"
        return redact_url(f"{operation}: {code}: {message}".rstrip(": "))
    lines = str(exc).splitlines()
    text = lines[0] if lines else type(exc).__name__
    return redact_url(f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text)
