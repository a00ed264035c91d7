"""Service Quotas' `bedrock` quotas and Bedrock's ListFoundationModels for the simulated AWS (moto serves neither:
its Service Quotas knows only `vpc` defaults and has no ListServiceQuotas; its Bedrock has no model catalogue).

What each answer does, and where it comes from:

- Service Quotas speaks JSON 1.1 (botocore's service-quotas model: `protocol: json`, target prefix
  `ServiceQuotasV20190624`). ListAWSDefaultServiceQuotas lists every quota of a service with its default value;
  ListServiceQuotas "lists the applied quota values ... If the applied quota value is not available for a quota, the
  quota is not retrieved" (API reference): here only the quotas an account was given a value of (`apply`). An unknown
  ServiceCode is NoSuchResourceException (an error both operations declare); other services go on to moto.
- Pages: `MaxResults` 1-100 (model); the page size AWS uses without it is not documented: 100 here. NextToken is
  opaque; one this fake did not issue is InvalidPaginationTokenException (declared by both operations).
- The quota names follow the per-model quota names of the project's domain notes (BEDROCK-BATCH.md, from the Amazon
  Bedrock quotas page: "Sum of in-progress and submitted batch inference jobs using a base model for <model>", plus
  records-per-job and job-size quotas per model); the exact wording of the last two ("Records per batch inference
  job for <model>", "Batch inference job size (in GB) for <model>") is an assumption. Their codes are made up (stable
  per name; real ones look alike, L- and 8 hex digits). Default values: the domain notes cite 10 or 20 concurrent
  jobs from different sources; 10 here (the simulation's default concurrency), 50,000 records per job and 1 GB per
  job are assumptions, not AWS figures.
- One concurrent-job quota names a model the catalogue no longer lists (a legacy model): the exporter must count it
  as unmatched, never guess.
- ListFoundationModels: `GET /foundation-models`, not paginated, `modelSummaries` of FoundationModelSummary (modelArn
  and modelId required). The model's `BrandedName` allows 20 characters, but real names are longer ("Titan Text
  Embeddings V2"): botocore does not check answers, so the fake sends the real names. The filters are honoured for
  byProvider; the others are accepted and ignored (every catalogue model here is TEXT or EMBEDDING, ON_DEMAND).
- The catalogue and quotas are the same in every region and account (AWS varies them by region: a simplification).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from exporter.demo.wsgi import StartResponse

JSON_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "ServiceQuotasV20190624."
CONCURRENT = "Sum of in-progress and submitted batch inference jobs using a base model for "
DEFAULT_CONCURRENCY = 10.0
MAX_BODY = 64 << 10
DEFAULT_PAGE = 100

# (model ID, display name, provider, output modality): real IDs and display names of Bedrock's catalogue
CATALOGUE = (
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "Claude 3.5 Sonnet", "Anthropic", "TEXT"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "Claude 3 Haiku", "Anthropic", "TEXT"),
    ("amazon.nova-pro-v1:0", "Nova Pro", "Amazon", "TEXT"),
    ("amazon.titan-embed-text-v2:0", "Titan Text Embeddings V2", "Amazon", "EMBEDDING"),
    ("meta.llama3-1-70b-instruct-v1:0", "Llama 3.1 70B Instruct", "Meta", "TEXT"),
    ("meta.llama3-1-8b-instruct-v1:0", "Llama 3.1 8B Instruct", "Meta", "TEXT"),
)
LEGACY_NAME = "Claude Instant"  # has a quota, not in the catalogue


def quota_code(name: str) -> str:
    return "L-" + hashlib.sha256(name.encode()).hexdigest()[:8].upper()


def _quota_names() -> tuple[str, ...]:
    names = [LEGACY_NAME, *(name for _, name, _, _ in CATALOGUE)]
    return tuple(
        f"{kind}{name}"
        for name in names
        for kind in (CONCURRENT, "Records per batch inference job for ", "Batch inference job size (in GB) for ")
    )


def _default(name: str) -> float:
    if name.startswith(CONCURRENT):
        return DEFAULT_CONCURRENCY
    return 50_000.0 if name.startswith("Records") else 1.0


class ServiceQuotas:
    """The bedrock quotas' defaults, the values applied per account and region, and the model catalogue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._applied: dict[tuple[str, str, str], float] = {}  # (account, region, quota code) -> value
        self.names = _quota_names()

    def apply(self, account: str, region: str, model_name: str, value: float) -> str:
        """Give an account's concurrent-job quota of the model named `model_name` a value; its code."""
        code = quota_code(CONCURRENT + model_name)
        with self._lock:
            self._applied[(account, region, code)] = value
        return code

    def clear(self) -> None:
        with self._lock:
            self._applied.clear()

    def handles(self, environ: Mapping[str, Any]) -> bool:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        return target.startswith(TARGET_PREFIX) or environ.get("PATH_INFO") == "/foundation-models"

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse, account: str, region: str
    ) -> Iterable[bytes] | None:
        """The answer, or None for a request moto should serve (a service code other than bedrock)."""
        if environ.get("PATH_INFO") == "/foundation-models":
            return self._models(environ, start_response, region)
        operation = str(environ.get("HTTP_X_AMZ_TARGET", ""))[len(TARGET_PREFIX) :]
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
        raw = environ["wsgi.input"].read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _error(start_response, "IllegalArgumentException", "the request body is not JSON")
        if not isinstance(body, dict) or operation not in ("ListAWSDefaultServiceQuotas", "ListServiceQuotas"):
            return _error(start_response, "IllegalArgumentException", f"unsupported request {operation!r}")
        if body.get("ServiceCode") != "bedrock":
            if body.get("ServiceCode") in ("vpc",):
                environ["wsgi.input"] = io.BytesIO(raw)  # moto reads the body again
                return None  # moto's own defaults
            return _error(
                start_response, "NoSuchResourceException", "The request failed because the service code does not exist."
            )
        quotas = self._quotas(account, region, applied_only=operation == "ListServiceQuotas")
        size = body.get("MaxResults", DEFAULT_PAGE)
        if not isinstance(size, int) or not 1 <= size <= 100:
            return _error(start_response, "IllegalArgumentException", "MaxResults must be 1-100")
        start = _offset(body.get("NextToken"), len(quotas))
        if start is None:
            return _error(start_response, "InvalidPaginationTokenException", "Invalid NextToken.")
        page: dict[str, Any] = {"Quotas": quotas[start : start + size]}
        if start + size < len(quotas):
            page["NextToken"] = base64.b64encode(f"q{start + size}".encode()).decode()
        return _json(start_response, page)

    def _quotas(self, account: str, region: str, applied_only: bool) -> list[dict[str, Any]]:
        with self._lock:
            applied = {code: v for (a, r, code), v in self._applied.items() if (a, r) == (account, region)}
        out = []
        for name in self.names:
            code = quota_code(name)
            if applied_only and code not in applied:
                continue
            out.append(
                {
                    "ServiceCode": "bedrock",
                    "ServiceName": "Amazon Bedrock",
                    "QuotaArn": f"arn:aws:servicequotas:{region}:{account}:bedrock/{code}",
                    "QuotaCode": code,
                    "QuotaName": name,
                    "Value": applied.get(code, _default(name)) if applied_only else _default(name),
                    "Unit": "None",
                    "Adjustable": True,
                    "GlobalQuota": False,
                    "QuotaAppliedAtLevel": "ACCOUNT",
                }
            )
        return out

    def _models(self, environ: dict[str, Any], start_response: StartResponse, region: str) -> Iterable[bytes]:
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        provider = query.get("byProvider", [""])[0].casefold()
        summaries = [
            {
                "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}",
                "modelId": model_id,
                "modelName": name,
                "providerName": vendor,
                "inputModalities": ["TEXT"],
                "outputModalities": [modality],
                "responseStreamingSupported": modality == "TEXT",
                "customizationsSupported": [],
                "inferenceTypesSupported": ["ON_DEMAND"],
                "modelLifecycle": {"status": "ACTIVE"},
            }
            for model_id, name, vendor, modality in CATALOGUE
            if not provider or vendor.casefold() == provider
        ]
        raw = json.dumps({"modelSummaries": summaries}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(raw)))])
        return [raw]


def _offset(token: Any, total: int) -> int | None:
    if token is None:
        return 0
    try:
        text = base64.b64decode(str(token), validate=True).decode()
        offset = int(text[1:]) if text.startswith("q") else -1
    except ValueError:
        return None
    return offset if 0 < offset < total else None


def _json(start_response: StartResponse, body: dict[str, Any], status: str = "200 OK") -> list[bytes]:
    raw = json.dumps(body).encode()
    start_response(status, [("Content-Type", JSON_TYPE), ("Content-Length", str(len(raw)))])
    return [raw]


def _error(start_response: StartResponse, code: str, message: str) -> list[bytes]:
    """A JSON 1.1 error: status 400 and {"__type", "message"} (botocore reads the code from __type)."""
    return _json(start_response, {"__type": code, "message": message}, "400 Bad Request")
