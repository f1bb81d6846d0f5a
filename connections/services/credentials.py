"""Deploying User Credentials artifacts and resolving the deployed values for the runtime."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CredentialError
from ..models import UserCredential


@dataclass(frozen=True)
class DeployedCredential:
    name: str
    username: str
    password: str
    version: int

    def __repr__(self) -> str:  # never show the secret
        return f"DeployedCredential(name={self.name!r}, username={self.username!r}, version={self.version})"


def resolve_deployed(*, tenant_id: int, name: str) -> DeployedCredential:
    """The deployed user name and password of the artifact `name` in the tenant."""
    try:
        cred = UserCredential.objects.get(tenant_id=tenant_id, name=name)
    except UserCredential.DoesNotExist:
        raise CredentialError(
            f"No User Credentials artifact named '{name}' exists in this tenant.",
            hint="create and deploy it, or correct the connection's Credential Name",
        ) from None
    if cred.version == 0 or cred.deployed_password is None:
        raise CredentialError(
            f"User Credentials artifact '{name}' has never been deployed.", hint="deploy it"
        )
    return DeployedCredential(
        name=cred.name, username=cred.deployed_username, password=cred.deployed_password, version=cred.version
    )
