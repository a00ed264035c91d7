"""AwsClients: per-target credentials over shared botocore parts (one session's components, one class per service)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.client
import botocore.session
import pytest

from exporter.aws import session as aws_session
from exporter.aws.cloudwatch import _LeanParser, _LeanSerializer, run_batch
from exporter.aws.session import AwsClients
from exporter.config import AwsConfig, TargetConfig
from exporter.demo.server import SimulatedAws
from exporter.model import MissingData, ResolvedMetric, SeriesKey
from exporter.planner import plan
from tests.conftest import put_as_role

NS = "AWS/Bedrock/Batch"
METRIC = "NumberOfRecordsPendingProcessing"
# test fixture accounts
ROLES = {
    "111111111111": "arn:aws:iam::111111111111:role/bedrock-batch-reader",
    "222222222222": "arn:aws:iam::222222222222:role/bedrock-batch-reader",
}


def _put_as(aws: SimulatedAws, role_arn: str, model: str, value: float) -> None:
    put_as_role(aws, role_arn, METRIC, model, value, datetime.now(UTC) - timedelta(seconds=15))


def _models(client: Any) -> set[str]:
    pages = client.get_paginator("list_metrics").paginate(Namespace=NS)
    return {d["Value"] for page in pages for m in page["Metrics"] for d in m["Dimensions"] if d["Name"] == "ModelId"}


def _target(aws: SimulatedAws, role_arn: str | None) -> TargetConfig:
    return TargetConfig(regions=("us-east-1",), endpoint_url=aws.url, role_arn=role_arn)


def test_role_targets_share_one_class_per_service_and_keep_their_own_credentials(fresh_aws: SimulatedAws) -> None:
    for account, role in ROLES.items():
        _put_as(fresh_aws, role, f"model-of-{account}", 1.0)
    clients = AwsClients(AwsConfig())
    targets = {account: _target(fresh_aws, role) for account, role in ROLES.items()}
    cloudwatch = {account: clients.client("cloudwatch", t, "us-east-1") for account, t in targets.items()}
    bedrock = {account: clients.client("bedrock", t, "us-east-1") for account, t in targets.items()}
    plain = clients.client("cloudwatch", _target(fresh_aws, None), "us-east-1")

    # One class per service across targets; each service its own class.
    assert len({type(c) for c in cloudwatch.values()} | {type(plain)}) == 1
    assert len({type(c) for c in bedrock.values()}) == 1
    assert type(plain) is not type(bedrock["111111111111"])
    # The clients themselves are distinct objects with their own event emitters (our call recording hooks there).
    assert cloudwatch["111111111111"] is not cloudwatch["222222222222"]
    assert cloudwatch["111111111111"].meta.events is not cloudwatch["222222222222"].meta.events

    # Each role target reads its own account only: the requests are signed with its own assumed-role keys.
    before = fresh_aws.count("AssumeRole")
    for account, client in cloudwatch.items():
        assert _models(client) == {f"model-of-{account}"}
    assert fresh_aws.count("AssumeRole") - before == len(ROLES)  # one assume-role per target, not per call
    assert _models(plain) == set()  # the default account saw neither


def test_sessions_of_others_keep_botocore_behaviour(fresh_aws: SimulatedAws) -> None:
    """The class cache is for our sessions only: anyone else's session gets a new class per client, as botocore
    makes them (their event handlers may change between clients)."""
    AwsClients(AwsConfig())  # installs the cache
    wrapped = botocore.client.ClientCreator._create_client_class
    assert getattr(wrapped, "_bedrock_batch_exporter", False), "botocore changed: clients no longer share classes"
    first = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=fresh_aws.url)
    second = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=fresh_aws.url)
    assert type(first) is not type(second)


def test_invalidated_role_target_assumes_the_role_again(fresh_aws: SimulatedAws) -> None:
    role = ROLES["111111111111"]
    _put_as(fresh_aws, role, "m", 1.0)
    clients = AwsClients(AwsConfig())
    target = _target(fresh_aws, role)
    first = clients.client("cloudwatch", target, "us-east-1")
    assert _models(first) == {"m"}
    before = fresh_aws.count("AssumeRole")
    clients.invalidate(target)
    second = clients.client("cloudwatch", target, "us-east-1")
    assert second is not first and type(second) is type(first)
    assert _models(second) == {"m"}
    assert fresh_aws.count("AssumeRole") == before + 1
    assert aws_session._CLASSES  # the cache holds our root session's classes


def test_lean_model_files_resolve_endpoints_and_models_as_botocore_does() -> None:
    """The trimmed endpoint table and plain-dict models (`_ModelFiles`) change nothing a client resolves: URL,
    signing name and region, per service, in a commercial, a GovCloud, a China and an ISO region."""
    ours = AwsClients._new_root()
    theirs = botocore.session.get_session()
    for service in aws_session.SERVICES:
        assert ours.get_component("data_loader").load_service_model(service, "service-2") == theirs.get_component(
            "data_loader"
        ).load_service_model(service, "service-2")
        for region in ("us-east-1", "eu-west-1", "us-gov-west-1", "cn-north-1", "us-iso-east-1"):
            a = ours.create_client(service, region_name=region, aws_access_key_id="k", aws_secret_access_key="s")
            b = theirs.create_client(service, region_name=region, aws_access_key_id="k", aws_secret_access_key="s")
            assert (a.meta.endpoint_url, a.meta.region_name) == (b.meta.endpoint_url, b.meta.region_name)
            assert a._request_signer._signing_name == b._request_signer._signing_name
            assert a._request_signer._region_name == b._request_signer._region_name
    table = ours.get_component("data_loader").load_data("endpoints")
    kept = {name for partition in table["partitions"] for name in partition["services"]}
    assert kept == set(aws_session.SERVICES.values())
    assert [p["partition"] for p in table["partitions"]] == [
        p["partition"] for p in theirs.get_component("data_loader").load_data("endpoints")["partitions"]
    ]


def test_clients_only_for_the_services_the_endpoint_table_keeps(fresh_aws: SimulatedAws) -> None:
    with pytest.raises(ValueError, match="no client for 'ec2'"):
        AwsClients(AwsConfig()).client("ec2", _target(fresh_aws, None), "us-east-1")


def test_a_reload_and_an_invalidation_keep_the_parsed_models(fresh_aws: SimulatedAws) -> None:
    first = AwsClients(AwsConfig())
    assert AwsClients(AwsConfig(), models_from=first).models is first.models
    loader = first.models
    first.invalidate(_target(fresh_aws, None))  # a fresh root session for non-role targets, same models
    assert first.models is loader
    assert AwsClients(AwsConfig()).models is not loader


def test_the_daemons_get_metric_data_calls_take_the_lean_path(fresh_aws: SimulatedAws) -> None:
    """The lean path (exporter.aws.cloudwatch) is taken by the clients the daemon builds, for the protocol botocore
    picks: the day botocore speaks CloudWatch over another protocol (its model also lists smithy-rpc-v2-cbor and
    query), this fails instead of the path switching itself off."""
    # two minutes back: inside the 5-minute window, whose end is the last minute boundary before now
    put_as_role(fresh_aws, ROLES["111111111111"], METRIC, "m-lean", 4.0, datetime.now(UTC) - timedelta(seconds=120))
    clients = AwsClients(AwsConfig())
    client = clients.client("cloudwatch", _target(fresh_aws, ROLES["111111111111"]), "us-east-1")
    metric = ResolvedMetric(METRIC, ("Maximum",), 60, 300, 0, MissingData.NAN)
    (batch,) = plan([SeriesKey.of(NS, METRIC, {"ModelId": "m-lean"})], [metric], time.time(), 500)
    answers = run_batch(client, batch)
    assert [a.newest.value if a.newest else None for a in answers.values()] == [4.0]
    protocol = client.meta.service_model.resolved_protocol  # the one requests use (`protocol` is the first listed)
    assert isinstance(client._serializer, _LeanSerializer)
    assert isinstance(client._endpoint._response_parser_factory.create_parser(protocol), _LeanParser), protocol
