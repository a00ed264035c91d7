"""`doctor`: prove, per target and region, that credentials, permissions and endpoints work; it never writes."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from exporter import errors
from exporter.aws.bedrock import parse_job
from exporter.aws.cloudwatch import parse_list_metrics_page, run_batch
from exporter.aws.quotas import PAGE_SIZE, SERVICE_CODE, by_code, parse_models, parse_quotas
from exporter.aws.region import find_credentials
from exporter.aws.s3 import read_manifest
from exporter.aws.session import AwsClients
from exporter.config import Config, NamespaceConfig, TargetConfig, defaults_for
from exporter.errors import BadAnswerError
from exporter.manifests import KMS_DENIED, NOT_FOUND, manifest_location, parse_manifest, read_outcome
from exporter.model import MissingData, SeriesKey
from exporter.planner import Batch, Query, window
from exporter.quotas import match

OK, FAIL, SKIP, INFO = "OK", "FAIL", "--", "INFO"

# Operation -> the IAM action that allows it, as granted in deploy/iam/policy.json (a test keeps them equal).
IAM_ACTIONS = {
    "ListMetrics": "cloudwatch:ListMetrics",
    "GetMetricData": "cloudwatch:GetMetricData",
    "ListModelInvocationJobs": "bedrock:ListModelInvocationJobs",
    "AssumeRole": "sts:AssumeRole",
    "GetObject": "s3:GetObject",
    "ListAWSDefaultServiceQuotas": "servicequotas:ListAWSDefaultServiceQuotas",
    "ListServiceQuotas": "servicequotas:ListServiceQuotas",
    "ListFoundationModels": "bedrock:ListFoundationModels",
    "ListTagsForResource": "bedrock:ListTagsForResource",
}
_UNKNOWN_CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure"}


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, OK/FAIL/--/INFO, and the detail in the user's words."""

    name: str
    status: str
    detail: str


def explain(exc: BaseException) -> str:
    """What went wrong, in the user's words, with what to do; never a secret or a request body."""
    operation = str(getattr(exc, "operation_name", "") or "")
    prefix = f"{operation}: " if operation else ""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", "") or "")
        lowered = message.lower()
        if code in ("RequestTimeTooSkewed", "RequestExpired") or "skew" in lowered or "signature expired" in lowered:
            return f"{prefix}clock skew ({code}): this machine's clock is more than 5 minutes off AWS's; sync it (NTP)"
        if code == "OptInRequired":
            return f"{prefix}region not enabled for this account ({code}): enable it under Account > AWS Regions"
        if code in _UNKNOWN_CREDENTIALS:
            return (
                f"{prefix}AWS does not recognise these credentials here ({code}): wrong or deleted keys, or the "
                "region is not enabled for the account (opt-in regions: Account > AWS Regions)"
            )
        outcome = errors.classify(exc)
        if outcome == errors.ACCESS_DENIED:
            action = IAM_ACTIONS.get(operation, f"the IAM action for {operation or 'this call'}")
            hint = f"access denied ({code}): allow the IAM action {action} (deploy/iam/policy.json lists every one)"
            if operation == "AssumeRole":
                hint += ", and the role's trust policy must trust this identity"
            return prefix + hint
        if outcome == errors.THROTTLED:
            return f"{prefix}throttled ({code}): AWS refused for request rate; retry later or poll less often"
        if outcome == errors.EXPIRED_CREDENTIALS:
            return f"{prefix}credentials expired ({code}): refresh them (e.g. aws sso login, or a new session)"
    if isinstance(exc, NoCredentialsError):
        return "no credentials found in the AWS SDK chain"
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError):
        url = urlsplit(str(getattr(exc, "kwargs", {}).get("endpoint_url", "") or ""))
        endpoint = f"{url.scheme}://{url.hostname}{f':{url.port}' if url.port else ''}" if url.hostname else "endpoint"
        return (
            f"{prefix}endpoint unreachable: {endpoint}: check the network, proxy or VPC endpoint, and that the "
            "service is offered in this region"
        )
    if isinstance(exc, ReadTimeoutError):
        return f"{prefix}no answer within aws.read_timeout: AWS or the network is slow; retry, or raise the timeout"
    return errors.describe(exc)


def _source_of(target: TargetConfig) -> TargetConfig:
    """The target without its role: the exporter's own identity, whose credentials assume the role."""
    return target.model_copy(update={"role_arn": None, "external_id": None, "name": f"{target.label} (source)"})


def check_region(config: Config, target: TargetConfig, region: str, clients: AwsClients, now: float) -> Iterator[Check]:
    """Every check of one target in one region, in order; stops after the first failure that blocks the rest."""
    try:
        identity = clients.client("sts", _source_of(target), region).get_caller_identity()
        yield Check("identity", OK, f"{identity.get('Arn', '?')} (GetCallerIdentity)")
    except Exception as exc:
        yield Check("identity", FAIL, explain(exc))
        return
    if target.role_arn:
        try:
            assumed = clients.client("sts", target, region).get_caller_identity()
            yield Check("assume-role", OK, f"{target.role_arn} -> {assumed.get('Arn', '?')}")
        except Exception as exc:
            yield Check("assume-role", FAIL, explain(exc))
            return
    else:
        yield Check("assume-role", SKIP, "not configured (no role_arn)")
    namespaces = config.namespaces_for(target)
    discovered: dict[str, list[SeriesKey]] = {}
    try:
        cloudwatch = clients.client("cloudwatch", target, region)
    except Exception as exc:
        yield Check("cloudwatch", FAIL, explain(exc))
        return
    for ns in namespaces:
        if not ns.resolved_metrics() or ns.discovery.mode != "list_metrics":
            continue
        kwargs: dict[str, Any] = {"Namespace": ns.namespace}
        if ns.discovery.recently_active:
            kwargs["RecentlyActive"] = "PT3H"
        linked = target.include_linked_accounts
        if linked:
            kwargs["IncludeLinkedAccounts"] = True
        name = f"{IAM_ACTIONS['ListMetrics']} ({ns.namespace})"
        try:
            page = cloudwatch.list_metrics(**kwargs)
            own = clients.account_id(target) if linked else ""
            found = discovered[ns.namespace] = parse_list_metrics_page(page, ns.namespace, linked, own)
            more = " (more pages follow)" if page.get("NextToken") else ""
            yield Check(name, OK, f"{len(found)} metric(s) on the first page{more}")
            if linked:
                yield _linked_accounts(page, found, ns.namespace)
        except Exception as exc:
            yield Check(name, FAIL, explain(exc))
    yield _get_metric_data(cloudwatch, namespaces, discovered, now)
    job_aware = [ns.namespace for ns in namespaces if defaults_for(ns.namespace).follows_jobs]
    if config.jobs.enabled and job_aware:
        jobs: list[Any] = []
        try:
            answer = clients.client("bedrock", target, region).list_model_invocation_jobs(maxResults=1)
            jobs = answer.get("invocationJobSummaries") or []
            yield Check(IAM_ACTIONS["ListModelInvocationJobs"], OK, f"{len(jobs)} job(s) on a page of at most 1")
        except Exception as exc:
            yield Check(IAM_ACTIONS["ListModelInvocationJobs"], FAIL, explain(exc))
        if config.jobs.tag_labels:
            yield _read_job_tags(config, clients.client("bedrock", target, region), jobs)
        if config.jobs.read_manifests:
            yield _read_one_manifest(config, clients, target, region)
        if config.jobs.quotas.enabled:
            yield from _read_quotas(config, clients, target, region)
    for namespace in (ns for ns in job_aware if ns in discovered):
        found = discovered[namespace]
        dimension = defaults_for(namespace).model_dimension
        models = sorted({v for s in found for k, v in s.dimensions if k == dimension})
        if found:
            shown = ", ".join(models[:3]) + (", ..." if len(models) > 3 else "")
            yield Check("data", INFO, f"{namespace} has {len(found)} series here (models: {shown})")
        else:
            yield Check(
                "data",
                INFO,
                f"no {namespace} metrics here in the last 3 hours: normal when no batch job ran "
                "(Bedrock publishes them only while jobs run); series appear with the next job",
            )


def _linked_accounts(page: Any, found: list[SeriesKey], namespace: str) -> Check:
    """include_linked_accounts: which source accounts the first ListMetrics page named."""
    accounts = sorted({key.account for key in found} - {""})
    if accounts:
        shown = ", ".join(accounts[:5]) + (", ..." if len(accounts) > 5 else "")
        return Check("linked accounts", OK, f"{namespace}: series of {len(accounts)} source account(s): {shown}")
    if page.get("OwningAccounts") is None:
        return Check(
            "linked accounts",
            INFO,
            "ListMetrics named no owning accounts: this is not a CloudWatch monitoring account in this region, or no "
            "source account is linked to it (CloudWatch settings: cross-account observability)",
        )
    return Check("linked accounts", INFO, f"{namespace}: no source account's series on the first page")


def _read_job_tags(config: Config, client: Any, jobs: list[Any]) -> Check:
    """jobs.tag_labels: ListTagsForResource of the newest job, if there is one; which configured keys it carries."""
    name = IAM_ACTIONS["ListTagsForResource"]
    arn = jobs[0].get("jobArn") if jobs and isinstance(jobs[0], dict) else None
    if not isinstance(arn, str):
        return Check(name, SKIP, "no job to read the tags of")
    try:
        listed = client.list_tags_for_resource(resourceARN=arn).get("tags") or []
    except Exception as exc:
        return Check(name, FAIL, explain(exc))
    keys = {t.get("key") for t in listed if isinstance(t, dict)}
    carried = [k for k in config.jobs.tag_labels if k in keys]
    shown = ", ".join(carried) if carried else "none of jobs.tag_labels"
    return Check(name, OK, f"{len(listed)} tag(s) on the newest job ({shown})")


def _read_quotas(config: Config, clients: AwsClients, target: TargetConfig, region: str) -> Iterator[Check]:
    """jobs.quotas: each of the three reads (one page each), then how many models the quotas were matched to."""
    found: dict[str, Any] = {}
    calls = (
        ("ListAWSDefaultServiceQuotas", "service-quotas", "list_aws_default_service_quotas"),
        ("ListServiceQuotas", "service-quotas", "list_service_quotas"),
        ("ListFoundationModels", "bedrock", "list_foundation_models"),
    )
    for operation, service, method in calls:
        kwargs = {} if service == "bedrock" else {"ServiceCode": SERVICE_CODE, "MaxResults": PAGE_SIZE}
        try:
            found[operation] = answer = getattr(clients.client(service, target, region), method)(**kwargs)
        except Exception as exc:
            yield Check(IAM_ACTIONS[operation], FAIL, explain(exc))
            continue
        listed = answer.get("modelSummaries" if service == "bedrock" else "Quotas") or []
        yield Check(IAM_ACTIONS[operation], OK, f"{len(listed)} on the first page")
    if len(found) < len(calls):
        return
    try:
        quotas = by_code(
            parse_quotas(found["ListAWSDefaultServiceQuotas"], False), parse_quotas(found["ListServiceQuotas"], True)
        )
        matched = match(quotas, parse_models(found["ListFoundationModels"]), config.jobs.quotas.model_map)
    except BadAnswerError as exc:
        yield Check("batch quotas", FAIL, str(exc))
        return
    unmatched = f"; not matched to a model: {'; '.join(matched.unmatched[:3])}" if matched.unmatched else ""
    yield Check("batch quotas", INFO, f"{len(matched.quotas)} model(s) with a concurrent-job quota{unmatched}")


def _read_one_manifest(config: Config, clients: AwsClients, target: TargetConfig, region: str) -> Check:
    """jobs.read_manifests: read the manifest of one recently completed job (GetObject), if there is one."""
    name = f"{IAM_ACTIONS['GetObject']} (job manifests)"
    try:
        answer = clients.client("bedrock", target, region).list_model_invocation_jobs(
            statusEquals="Completed", maxResults=10, sortBy="CreationTime", sortOrder="Descending"
        )
        jobs = [j for s in answer.get("invocationJobSummaries") or () if (j := parse_job(s)) and j.output_s3_uri]
        if not jobs:
            return Check(name, SKIP, "no completed job with an S3 output to read a manifest of")
        job = jobs[0]
        assert job.output_s3_uri is not None
        bucket, key = manifest_location(job.output_s3_uri, job.job_id)
        data = read_manifest(
            clients.client("s3", target, region), bucket, key, job.output_bucket_owner, config.jobs.manifest_max_bytes
        )
        usage = parse_manifest(data, job.arn)
        return Check(name, OK, f"read s3://{bucket}/{key}: {usage.input_tokens:,} input tokens")
    except Exception as exc:
        outcome = read_outcome(exc)
        if outcome == NOT_FOUND:
            return Check(name, INFO, "the newest completed job has no manifest (yet): access could not be proven")
        if outcome == KMS_DENIED:
            return Check(name, FAIL, f"{explain(exc)}; the bucket is SSE-KMS encrypted: allow kms:Decrypt on its key")
        return Check(name, FAIL, explain(exc))


def _get_metric_data(
    client: Any, namespaces: tuple[NamespaceConfig, ...], discovered: dict[str, list[SeriesKey]], now: float
) -> Check:
    """One GetMetricData call with one query: a discovered series if any, else the first configured metric."""
    name = IAM_ACTIONS["GetMetricData"]
    with_metrics = [ns for ns in namespaces if ns.resolved_metrics()]
    if not with_metrics:
        return Check(name, SKIP, "no metric configured (Insights queries use the same permission)")
    ns = next((n for n in with_metrics if discovered.get(n.namespace)), with_metrics[0])
    metric = ns.resolved_metrics()[0]
    found = [s for s in discovered.get(ns.namespace, []) if s.metric in {m.name for m in ns.resolved_metrics()}]
    series = found[0] if found else SeriesKey.of(ns.namespace, metric.name, {})
    period = next((m.period for m in ns.resolved_metrics() if m.name == series.metric), metric.period)
    start, end = window(now, period, max(period, 300), 60)
    query = Query("q0", series, metric.statistics[0], period, MissingData.NAN)
    try:
        run_batch(client, Batch(start, end, (query,)))
        return Check(name, OK, f"1 query answered ({series.metric} {query.statistic})")
    except Exception as exc:
        return Check(name, FAIL, explain(exc))


def run_checks(config: Config, emit: Callable[[str, str, Check], None]) -> int:
    """Run every check, reporting each as it completes; returns the number of failures."""
    failures = 0
    credentials = find_credentials()
    clients = AwsClients(config.aws)
    now = time.time()
    for target in config.targets:
        for region in target.regions:
            if credentials is None:
                emit(target.label, region, Check("credentials", FAIL, _NO_CREDENTIALS))
                failures += 1
                continue
            where = f"found in {credentials.description} (botocore: {credentials.method})"
            emit(target.label, region, Check("credentials", OK, where))
            for check in check_region(config, target, region, clients, now):
                failures += check.status == FAIL
                emit(target.label, region, check)
    return failures


_NO_CREDENTIALS = (
    "no credentials found in the AWS SDK chain: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
    "or run with an IAM role (instance profile, IRSA, EKS Pod Identity, ECS task role)"
)


# `doctor --output json`: {schema_version, ok, failures, checks: [{target, region, name, status, detail}]}
JSON_SCHEMA_VERSION = 1


def run_doctor(config: Config, output: str = "text") -> int:
    """The `doctor` command: prints one line per check (or one JSON document); exit 0 when everything needed works,
    else 1."""
    # botocore logs a failed assume-role refresh with its traceback; the report names the cause in one line instead
    logging.getLogger("botocore.credentials").setLevel(logging.ERROR)
    current: list[tuple[str, str]] = []
    found: list[dict[str, str]] = []

    def emit(target: str, region: str, check: Check) -> None:
        if output == "json":
            found.append({"target": target, "region": region, **asdict(check)})
            return
        if current != [(target, region)]:
            current[:] = [(target, region)]
            print(f"{target} / {region}", flush=True)
        print(f"  {check.status:<5} {check.name}: {check.detail}", flush=True)

    failures = run_checks(config, emit)
    if output == "json":
        document = {"schema_version": JSON_SCHEMA_VERSION, "ok": not failures, "failures": failures, "checks": found}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    elif failures:
        print(f"{failures} problem(s) found: fix them and run `bedrock-batch-exporter doctor` again")
    else:
        print("everything the config needs works")
    return 1 if failures else 0
