"""Every AWS client comes from here: one shared botocore session, per-target credentials, call recording."""

from __future__ import annotations

import copy
import functools
import gzip
import logging
import os
import re
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import botocore.client
import botocore.loaders
import botocore.session
import orjson
from botocore.config import Config as BotoConfig
from botocore.credentials import AssumeRoleCredentialFetcher, Credentials, DeferredRefreshableCredentials

from exporter import __version__, errors
from exporter.aws.answers import cap_answers
from exporter.config import AwsConfig, TargetConfig
from exporter.logs import quiet_credential_refresh

log = logging.getLogger(__name__)
quiet_credential_refresh()  # a failed assume-role refresh: one line (the poller's), the traceback only at debug

_ROLE_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/")

# The services this exporter calls, by name -> endpoint prefix (the key of botocore's endpoints.json). AwsClients makes
# clients for these only: the endpoint table it loads keeps just their entries (`_ModelFiles`).
SERVICES = {
    "cloudwatch": "monitoring",
    "bedrock": "bedrock",
    "sts": "sts",
    "s3": "s3",
    "service-quotas": "servicequotas",
}


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


# One client class per service, shared by every client made from one of our sessions.
#
# botocore's ClientCreator builds a new class for every client it makes (`_create_client_class`: one method per API
# operation with its docstring object, ~160 KB for Bedrock or CloudWatch), although the class depends only on the
# service model and the handlers of the session's event emitter. With one Bedrock and one CloudWatch client per
# (account, region) target, those classes were two thirds of a target's memory (docs/performance.md). The cache is
# keyed by the emitter, and only emitters of sessions made here are cached (`_share_classes`): a boto3 or botocore
# session of anyone else in the process, whose handlers may change after its first client, gets botocore's own
# behaviour. If a botocore release drops the method, clients are made as botocore makes them (nothing is cached);
# tests/integration/test_clients.py fails on such a release so the loss is seen.
_CLASSES: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], type]] = weakref.WeakKeyDictionary()
_CLASSES_LOCK = threading.Lock()


def _install_class_cache() -> bool:
    creator = botocore.client.ClientCreator
    original: Callable[..., type] | None = getattr(creator, "_create_client_class", None)
    if original is None:
        return False
    if getattr(original, "_bedrock_batch_exporter", False):
        return True

    @functools.wraps(original)
    def create_client_class(self: Any, service_name: str, service_model: Any) -> type:
        emitter = getattr(self, "_event_emitter", None)
        with _CLASSES_LOCK:
            classes = _CLASSES.get(emitter) if emitter is not None else None
            if classes is None:
                return original(self, service_name, service_model)
            key = (service_name, str(getattr(service_model, "api_version", "")))
            cls = classes.get(key)
            if cls is None:
                cls = classes[key] = original(self, service_name, service_model)
            return cls

    create_client_class._bedrock_batch_exporter = True  # type: ignore[attr-defined]
    creator._create_client_class = create_client_class
    return True


def _share_classes(session: botocore.session.Session) -> None:
    """Clients of this session (and of its credential views) share one class per service."""
    if _install_class_cache():
        with _CLASSES_LOCK:
            _CLASSES.setdefault(session.get_component("event_emitter"), {})


def _credential_view(root: botocore.session.Session, credentials: Credentials) -> botocore.session.Session:
    """A session that is `root` in everything (event handlers, model loader, configuration, endpoint data) except
    its credentials.

    A shallow copy: it shares the root's components, and `get_credentials()` returns the cached credentials without
    asking the root's provider chain (botocore's Session.get_credentials reads `_credentials` first). A new
    botocore Session per role target would register its own ~150 event handlers and components (~130 KB each).
    """
    view = copy.copy(root)
    view._credentials = credentials
    return view


class _ModelFiles(botocore.loaders.JSONFileLoader):  # type: ignore[misc]
    """botocore's JSON model-file reader with two memory savings (docs/performance.md):

    - plain dicts instead of botocore's `OrderedDict`s (ordered all the same since Python 3.7; botocore reads
      them as mappings): a service model takes about two thirds of the memory (Bedrock's 2.98 -> 1.91 MB);
    - the legacy endpoint table (`endpoints.json`, 7 MB once parsed, read for every session's first client to find
      signing names and regions) keeps the entries of `SERVICES` only, in every partition; everything else in it
      (partitions, regions, defaults) is kept as it is.
    """

    def load_file(self, file_path: str) -> Any:
        for extension, opener in ((".json", open), (".json.gz", gzip.open)):  # botocore's order
            path = file_path + extension
            if not os.path.isfile(path):
                continue
            with opener(path, "rb") as stream:
                data = orjson.loads(stream.read())
            if os.path.basename(file_path) == "endpoints" and isinstance(data, dict):
                data = _endpoints_for(data, set(SERVICES.values()))
            return data
        return None


def _endpoints_for(table: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    partitions = table.get("partitions")
    if not isinstance(partitions, list):
        return table
    kept = []
    for partition in partitions:
        services = partition.get("services") if isinstance(partition, dict) else None
        if isinstance(services, dict):
            kept.append({**partition, "services": {k: v for k, v in services.items() if k in prefixes}})
        else:
            kept.append(partition)
    return {**table, "partitions": kept}


def _model_loader(session: botocore.session.Session) -> botocore.loaders.Loader:
    """botocore's Loader for the session's data path (AWS_DATA_PATH too), reading files with `_ModelFiles`."""
    data_path = session.get_config_variable("data_path")
    extra = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else None
    return botocore.loaders.Loader(extra_search_paths=extra, file_loader=_ModelFiles())


class AwsClients:
    """Creates and caches clients per (service, target, region) from one shared botocore session.

    Role targets get a credential view of the root session (`_credential_view`: the root's components, their own
    refreshable assume-role credentials, renewed before they expire), and every client of one service shares one
    client class (`_share_classes`): what is left per target is the clients' own state (docs/performance.md).
    """

    def __init__(
        self,
        aws: AwsConfig,
        recorder: ApiRecorder | None = None,
        static_credentials: tuple[str, str] | None = None,
        models_from: AwsClients | None = None,
    ) -> None:
        # A reload's new clients reuse the parsed service models (the loader's cache, several MB) instead of parsing
        # them again: freed memory is not always handed back to the OS, so each parse would stay.
        models: botocore.loaders.Loader | None = models_from.models if models_from is not None else None
        self._root = self._new_root(models)
        self._static_credentials = static_credentials
        if static_credentials is not None:
            self._root.set_credentials(*static_credentials)
        self._recorder = recorder
        self._max_answer_bytes = aws.max_answer_bytes
        self._lock = threading.RLock()
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

    @property
    def models(self) -> botocore.loaders.Loader:
        """The loader of the parsed service models these clients share."""
        loader: botocore.loaders.Loader = self._root.get_component("data_loader")
        return loader

    @staticmethod
    def _new_root(loader: botocore.loaders.Loader | None = None) -> botocore.session.Session:
        """A botocore session reading models through `loader` (by default a new `_model_loader`)."""
        session = botocore.session.get_session()
        session.register_component("data_loader", loader or _model_loader(session))
        _share_classes(session)
        return session

    def client(self, service: str, target: TargetConfig, region: str, account_id: str = "", keep: bool = True) -> Any:
        """A client for `service` in `region` with the target's credentials and endpoint (thread-safe). `keep=False`
        for a rare read (Service Quotas, hourly): a client made for it and not kept, as a kept one costs ~0.2 MB per
        target and region (benchmarks/run.py --only targets: 0.58 -> 0.41 MB per target)."""
        if service not in SERVICES:
            raise ValueError(f"no client for {service!r}: the endpoint table keeps {sorted(SERVICES)} only")
        key = (service, target.label, region, target.endpoint_url or "")
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # Low-level clients straight from botocore: a boto3 Session per client would re-inject boto3's S3
                # transfer methods into the shared session's S3 client class and fail on the second S3 client.
                client = self._session_for(target).create_client(
                    service, region_name=region, endpoint_url=_endpoint(target), config=self._config
                )
                if not cap_answers(client, self._max_answer_bytes):
                    log.warning("botocore's client layout changed: AWS answers are read without aws.max_answer_bytes")
                if self._recorder is not None:
                    self._watch(client, account_id or target.account_id or "", region)
                if keep:
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
                fresh = self._new_root(self.models)
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
            extra: dict[str, str] = {"RoleSessionName": "bedrock-batch-exporter"}
            if target.external_id:
                extra["ExternalId"] = target.external_id
            fetcher = AssumeRoleCredentialFetcher(
                client_creator=functools.partial(
                    self._create_locked,
                    self._root,
                    region_name=target.regions[0],
                    endpoint_url=_endpoint(target),
                    config=self._config,
                ),
                source_credentials=self._root.get_credentials(),
                role_arn=target.role_arn,
                extra_args=extra,
            )
            credentials = DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method="assume-role")
            session = self._sessions[target.label] = _credential_view(self._root, credentials)
        return session

    def _create_locked(self, session: botocore.session.Session, service: str, **kwargs: Any) -> Any:
        """Clients are made one at a time: the views share the root session's components, which botocore does not
        guard (the assume-role fetcher makes its STS client from whichever thread refreshes the credentials)."""
        with self._lock:
            return session.create_client(service, **kwargs)

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
