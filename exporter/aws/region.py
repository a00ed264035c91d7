"""Where the region and credentials come from when no config names them, as an AWS user expects."""

from __future__ import annotations

import os
from dataclasses import dataclass

import botocore.session
from botocore.exceptions import ProfileNotFound
from botocore.utils import IMDSRegionProvider

# Instance metadata answers on the instance within milliseconds; off EC2 nothing answers, so wait little.
IMDS_TIMEOUT = 1.0

# botocore's credential provider `method` names -> where that is in the user's words.
_CREDENTIAL_SOURCES = {
    "env": "environment variables (AWS_ACCESS_KEY_ID)",
    "shared-credentials-file": "the shared credentials file (~/.aws/credentials)",
    "config-file": "the AWS config file (~/.aws/config)",
    "custom-process": "a credential_process in the AWS config file",
    "sso": "IAM Identity Center (SSO) in the AWS config file",
    "assume-role": "a role assumed by the profile in the AWS config file",
    "assume-role-with-web-identity": "a web identity token (IRSA: AWS_WEB_IDENTITY_TOKEN_FILE)",
    "container-role": "the container credentials endpoint (ECS task role or EKS Pod Identity)",
    "iam-role": "the EC2 instance profile (instance metadata)",
    "boto-config": "a boto2 config file",
    "explicit": "credentials passed explicitly",
}


@dataclass(frozen=True)
class FoundRegion:
    """A region and where it was found, e.g. ("us-east-1", "AWS_REGION")."""

    name: str
    source: str


def find_region() -> FoundRegion | None:
    """AWS_REGION, then AWS_DEFAULT_REGION, the profile's region, then instance metadata; None if none has one.

    botocore alone reads only AWS_DEFAULT_REGION and the config file; the AWS CLI and the newer SDKs read AWS_REGION
    first, so users expect it to work.
    """
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if value := os.environ.get(name, "").strip():
            return FoundRegion(value, name)
    session = botocore.session.get_session()
    try:
        profile = session.get_scoped_config().get("region")
        if profile:
            return FoundRegion(str(profile).strip(), f"the AWS config file (profile {session.profile or 'default'})")
        session.set_config_variable("metadata_service_timeout", IMDS_TIMEOUT)
        session.set_config_variable("metadata_service_num_attempts", 1)
        imds = IMDSRegionProvider(session).provide()
    except ProfileNotFound:
        return None  # AWS_PROFILE names a profile the config file lacks: the SDK refuses to go on, and so do we
    if imds:
        return FoundRegion(str(imds), "instance metadata")
    return None


@dataclass(frozen=True)
class CredentialSource:
    """Where the SDK chain found credentials: botocore's method name and its meaning; never the keys."""

    method: str
    description: str


def find_credentials() -> CredentialSource | None:
    """Run the default credential chain once (as every client would); None when no provider has credentials."""
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        return None
    method = str(getattr(credentials, "method", "") or "unknown")
    return CredentialSource(method, _CREDENTIAL_SOURCES.get(method, method))
