"""HTTP security from a web config file, in the spirit of Prometheus' exporter-toolkit: TLS and basic auth.

```yaml
tls_server_config:
  cert_file: /etc/exporter/tls.crt
  key_file: /etc/exporter/tls.key
basic_auth_users:
  prometheus: $2b$12$...   # a bcrypt hash, e.g. from: htpasswd -nBC 12 "" | tr -d ':\\n'
```
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
import threading
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import Field, ValidationError, field_validator

from exporter.config import ConfigError, _Model, _validation_problems

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


class TlsServerConfig(_Model):
    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    min_version: Literal["TLS12", "TLS13"] = "TLS12"


class WebConfig(_Model):
    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict, description="user name -> bcrypt hash")

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not hashed.startswith(_BCRYPT_PREFIXES) or len(hashed) != 60:
                raise ValueError(f"the password of {user!r} must be a bcrypt hash ($2b$...), not a plain password")
            if ":" in user:
                raise ValueError(f"user name {user!r} cannot contain ':'")
        return users


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file; raises ConfigError with one line per problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read web config file: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {str(exc).splitlines()[0]}"]) from None
    try:
        web = WebConfig.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError([f"{path}: {p}" for p in _validation_problems(exc)]) from None
    if web.tls_server_config is not None:
        tls_context(web.tls_server_config, path)  # fail now, not at the first connection
    return web


def tls_context(tls: TlsServerConfig, source: str | Path = "web config") -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"{source}: tls_server_config: cannot load certificate or key: {exc}"]) from None
    return context


class BasicAuth:
    """Checks `Authorization: Basic ...` against bcrypt hashes; a verified credential is remembered by its digest.

    bcrypt is slow on purpose (tens of milliseconds); Prometheus sends the same credentials on every scrape, so the
    exporter remembers which (user, password) pairs it has verified, keyed by a keyed hash, never the password.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._key = hashlib.sha256(repr(sorted(users.items())).encode()).digest()
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        if hashed is None:
            return False
        digest = hmac.new(self._key, f"{user}:{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if digest in self._verified:
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            if len(self._verified) < 1000:  # bounded: a handful of scrapers in practice
                self._verified.add(digest)
        return True
