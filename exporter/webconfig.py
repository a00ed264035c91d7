"""HTTP security from a web config file, in the spirit of Prometheus' exporter-toolkit: TLS and basic auth.

```yaml
tls_server_config:
  cert_file: /etc/exporter/tls.crt
  key_file: /etc/exporter/tls.key
basic_auth_users:
  prometheus: $2b$12$...   # a bcrypt hash, e.g. from: htpasswd -nBC 12 "" | tr -d ':\\n'
bcrypt_max_cost: 14        # hashes of a higher cost are refused (each check doubles per step)
health_without_auth: true  # /healthz and /readyz answer without credentials (Kubernetes probes send none)
```
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import Field, ValidationError, model_validator

from exporter.config import ConfigError, StrictModel, read_config_file, validation_problems
from exporter.yamlsafe import safe_load

# Modular crypt format of bcrypt: $2a$, $2b$ or $2y$, a two-digit cost, then 22 salt and 31 hash characters.
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_MIN_COST = 4  # the lowest cost bcrypt itself accepts
BCRYPT_HIGHEST_COST = 31  # the highest
BCRYPT_DEFAULT_MAX_COST = 14  # about 1 s per check on one core; every step above doubles it
BCRYPT_MAX_PASSWORD = 72  # bcrypt reads at most 72 bytes of a password; the library refuses longer ones


class TlsServerConfig(StrictModel):
    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    min_version: Literal["TLS12", "TLS13"] = "TLS12"


class WebConfig(StrictModel):
    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict, description="user name -> bcrypt hash")
    bcrypt_max_cost: int = Field(
        BCRYPT_DEFAULT_MAX_COST,
        ge=BCRYPT_MIN_COST,
        le=BCRYPT_HIGHEST_COST,
        description="highest bcrypt cost accepted in basic_auth_users; each step doubles the CPU time per check",
    )
    # Ours, not exporter-toolkit's: probes (Kubernetes' httpGet) send no credentials, and these two paths say only
    # "ok" or "ready", so they may be opened to them; off by default, as every path needs the credentials then.
    health_without_auth: bool = False

    @model_validator(mode="after")
    def _bcrypt_hashes(self) -> WebConfig:
        for user, hashed in self.basic_auth_users.items():
            if problem := bcrypt_hash_problem(hashed, self.bcrypt_max_cost):
                raise ValueError(f"basic_auth_users.{user}: {problem}")
            if ":" in user:
                raise ValueError(f"basic_auth_users.{user}: a user name cannot contain ':'")
        return self


def bcrypt_hash_problem(hashed: str, max_cost: int) -> str | None:
    """Why `hashed` cannot be used as a password hash, or None; never echoes the value."""
    match = _BCRYPT.fullmatch(hashed)
    if match is None:
        return "must be a bcrypt hash ($2b$<cost>$ and 53 characters), not a plain password or another format"
    cost = int(match.group(1))
    if cost < BCRYPT_MIN_COST:
        return f"bcrypt cost {cost} is below {BCRYPT_MIN_COST}, the lowest bcrypt accepts"
    if cost > BCRYPT_HIGHEST_COST:
        return f"bcrypt cost {cost} is above {BCRYPT_HIGHEST_COST}, the highest bcrypt allows"
    if cost > max_cost:
        return (
            f"bcrypt cost {cost} is above {max_cost}: every check would take about {2 ** (cost - 12) / 4:g} s "
            f"of CPU; use a lower cost, or raise bcrypt_max_cost if you mean it"
        )
    return None


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file; raises ConfigError with one line per problem."""
    text = read_config_file(path, "web config file")  # the main config's limits: regular file, size cap, UTF-8
    try:
        raw = safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {str(exc).splitlines()[0]}"]) from None
    try:
        web = WebConfig.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError([f"{path}: {p}" for p in validation_problems(exc)]) from None
    if web.tls_server_config is not None:
        tls_context(web.tls_server_config, path)  # fail now, not at the first connection
    return web


def tls_context(tls: TlsServerConfig, source: str | Path) -> ssl.SSLContext:
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
    Every check that reaches bcrypt costs what one check at the highest configured cost does (`_padding`), so
    neither an unknown user nor a user with a cheaper hash can be told apart by timing.
    """

    def __init__(self, users: dict[str, str], *, checker: Callable[[bytes, bytes], bool] = bcrypt.checkpw) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()
        self._check = checker
        self._costs = {user: _cost(hashed) for user, hashed in users.items()}
        self.highest_cost = max(self._costs.values(), default=BCRYPT_MIN_COST)
        self.dummy_hash = _dummy_hash(self.highest_cost)
        # bcrypt's work doubles per cost step, so checks at costs c, c+1, ..., highest-1 cost what the step from c
        # to the highest cost does (2**c + ... + 2**(highest-1) = 2**highest - 2**c): a user whose hash is cheaper
        # is padded with these after its own check, and answers in the time of the most expensive one.
        self._padding = {
            cost: _dummy_hash(cost)
            for cost in range(min(self._costs.values(), default=self.highest_cost), self.highest_cost)
        }

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except ValueError:  # bad base64 (binascii.Error), non-ASCII text, or bytes that are not UTF-8
            return False
        secret = password.encode()
        hashed = self._users.get(user)
        # an unknown user, or a password bcrypt would refuse: spend the same check, then refuse
        if hashed is None or len(secret) > BCRYPT_MAX_PASSWORD:
            self._checked(secret[:BCRYPT_MAX_PASSWORD], self.dummy_hash)
            return False
        digest = hmac.new(self._key, f"{user}:{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if digest in self._verified:
                return True
        verified = self._checked(secret, hashed)
        for cost in range(self._costs[user], self.highest_cost):  # none for the highest cost
            self._checked(secret, self._padding[cost])
        if not verified:
            return False
        with self._lock:
            if len(self._verified) < 1000:  # bounded: a handful of scrapers in practice
                self._verified.add(digest)
        return True

    def _checked(self, secret: bytes, hashed: bytes) -> bool:
        try:
            return self._check(secret, hashed)
        except ValueError:  # a NUL in the password, or a hash bcrypt cannot read despite the load-time check
            return False


def _cost(hashed: str) -> int:
    """A bcrypt hash's cost; one the load-time check would refuse (bcrypt refuses it at once) counts as the lowest."""
    match = _BCRYPT.fullmatch(hashed)
    return max(int(match.group(1)), BCRYPT_MIN_COST) if match else BCRYPT_MIN_COST


def _dummy_hash(cost: int) -> bytes:
    return bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(rounds=cost))
