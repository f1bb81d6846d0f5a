"""The hints of credential errors say what to do, and where."""
from __future__ import annotations

import pytest

from connections.errors import CredentialError
from connections.services.setup import credentials as service

from .credentials_world import make_credential


def test_never_deployed_hint_says_how_to_deploy(world):
    cred = make_credential(world.tenant_a)
    with pytest.raises(CredentialError) as info:
        service.resolve_deployed(tenant_id=world.tenant_a.pk, name=cred.name)
    assert "never been deployed" in info.value.message
    assert info.value.hint == (
        "open it under User Credentials artifacts in the admin and press Deploy (or apply_config with deploy: true)"
    )
