"""Every AWS client comes from here: one shared botocore session, per-target credentials, call recording."""

from __future__ import annotations

import functools
import logging
import re
import threading
from typing import Any, Protocol

import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)

from exporter import __version__
from exporter.aws import errors
from exporter.config import AwsConfig, TargetConfig

log = logging.getLogger(__name__)

_ROLE_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/")


class ApiRecorder(Protocol):
    """Told about every AWS call once it has finished (after botocore's own retries)."""

    def record_call(self, account_id: str, region: str, operation: str, outcome: str, retries: int) -> None: ...


def _endpoint(target: TargetConfig) -> str | None:
    """The target's endpoint URL without user info, which botocore never sends (requests are signed with SigV4)
    but would repeat in its exceptions and debug logs."""
    if target.endpoint_url is None:
        return None
    bare = errors.redact_url(target.endpoint_url)
    if bare != target.endpoint_url:
        log.warning("target %s: the user info in endpoint_url is ignored (AWS requests are signed)", target.label)
    return bare


class _FixedProvider(CredentialProvider):  # type: ignore[misc]
    METHOD = "assume-role"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


class AwsClients:
    """Creates and caches clients per (service, target, region) from one shared botocore session.

    Role targets get a light child session that shares the root session's model loader (the memory-heavy part)
    and holds refreshable assume-role credentials, so keys are renewed before they expire.
    """

    def __init__(
        self,
        aws: AwsConfig,
        recorder: ApiRecorder | None = None,
        static_credentials: tuple[str, str] | None = None,
        models_from: AwsClients | None = None,
    ) -> None:
        self._root = botocore.session.get_session()
        if models_from is not None:
            # A reload's new clients reuse the parsed service models (the loader's cache, several MB) instead of
            # parsing them again: freed memory is not always handed back to the OS, so each parse would stay.
            self._root.register_component("data_loader", models_from._root.get_component("data_loader"))
        self._static_credentials = static_credentials
        if static_credentials is not None:
            self._root.set_credentials(*static_credentials)
        self._recorder = recorder
        self._lock = threading.Lock()
        self._account_lock = threading.Lock()
        self._clients: dict[tuple[str, str, str, str], Any] = {}
        self._sessions: dict[str, botocore.session.Session] = {}
        self._accounts: dict[str, str] = {}
        self._config = BotoConfig(
            # `aws.max_attempts` counts every attempt, first included: botocore's `max_attempts` would count only the
            # retries after the first try, `total_max_attempts` counts them all (botocore's retry configuration).
            retries={"mode": aws.retry_mode, "total_max_attempts": aws.max_attempts},
            connect_timeout=aws.connect_timeout,
            read_timeout=aws.read_timeout,
            max_pool_connections=max(10, aws.max_concurrent_requests),
            user_agent_extra=f"bedrock-batch-exporter/{__version__}",
            # Our requests are built by the planner, whose shapes are unit-tested, and AWS validates them again:
            # botocore's client-side validation was 40 % of the CPU of a 10,000-query cycle (benchmarks/).
            parameter_validation=False,
        )

    def client(self, service: str, target: TargetConfig, region: str, account_id: str = "") -> Any:
        """A client for `service` in `region` with the target's credentials and endpoint (thread-safe)."""
        key = (service, target.label, region, target.endpoint_url or "")
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # Low-level clients straight from botocore: a boto3 Session per client would re-inject boto3's S3
                # transfer methods into the shared session's S3 client class and fail on the second S3 client.
                client = self._session_for(target).create_client(
                    service, region_name=region, endpoint_url=_endpoint(target), config=self._config
                )
                if self._recorder is not None:
                    self._watch(client, account_id or target.account_id or "", region)
                self._clients[key] = client
            return client

    def invalidate(self, target: TargetConfig) -> None:
        """Forget the target's clients and credentials (after an expired-token error): the next call starts fresh."""
        with self._lock:
            for key in [k for k in self._clients if k[1] == target.label]:
                del self._clients[key]
            if target.role_arn:
                self._sessions.pop(target.label, None)
            else:
                fresh = botocore.session.get_session()
                fresh.register_component("data_loader", self._root.get_component("data_loader"))
                if self._static_credentials is not None:
                    fresh.set_credentials(*self._static_credentials)
                self._root = fresh

    def known_account_id(self, target: TargetConfig) -> str:
        """The target's account if known without calling AWS (config, role ARN, earlier lookup), else ''."""
        if target.account_id:
            return target.account_id
        if target.role_arn and (match := _ROLE_ACCOUNT.match(target.role_arn)):
            return match.group(1)
        return self._accounts.get(target.label, "")

    def account_id(self, target: TargetConfig) -> str:
        """The target's account: from config, from its role ARN, or asked of STS once and cached."""
        if known := self.known_account_id(target):
            return known
        with self._account_lock:  # one STS call per target, even when its regions start together
            cached = self._accounts.get(target.label)
            if cached is None:
                sts = self.client("sts", target, target.regions[0])
                cached = str(sts.get_caller_identity()["Account"])
                self._accounts[target.label] = cached
            return cached

    def _session_for(self, target: TargetConfig) -> botocore.session.Session:
        if not target.role_arn:
            return self._root
        session = self._sessions.get(target.label)
        if session is None:
            session = botocore.session.Session()
            session.register_component("data_loader", self._root.get_component("data_loader"))
            extra: dict[str, str] = {"RoleSessionName": "bedrock-batch-exporter"}
            if target.external_id:
                extra["ExternalId"] = target.external_id
            creator = functools.partial(
                self._root.create_client,
                region_name=target.regions[0],
                endpoint_url=_endpoint(target),
                config=self._config,
            )
            fetcher = AssumeRoleCredentialFetcher(
                client_creator=creator,
                source_credentials=self._root.get_credentials(),
                role_arn=target.role_arn,
                extra_args=extra,
            )
            credentials = DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method="assume-role")
            session.register_component("credential_provider", CredentialResolver([_FixedProvider(credentials)]))
            self._sessions[target.label] = session
        return session

    def _watch(self, client: Any, account_id: str, region: str) -> None:
        recorder = self._recorder
        assert recorder is not None

        def after_call(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
            status = int(getattr(http_response, "status_code", 0) or 0)
            code = str(parsed.get("Error", {}).get("Code", "")) if isinstance(parsed, dict) else ""
            outcome = errors.SUCCESS if status < 300 else errors.classify_code(code, status)
            retries = int(parsed.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)
            recorder.record_call(account_id, region, model.name, outcome, retries)

        def after_call_error(exception: BaseException, event_name: str, **_: Any) -> None:
            operation = event_name.rsplit(".", 1)[-1]  # botocore sends no operation model with this event
            recorder.record_call(account_id, region, operation, errors.classify(exception), 0)

        client.meta.events.register("after-call", after_call)
        client.meta.events.register("after-call-error", after_call_error)
