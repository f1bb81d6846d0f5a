"""access.lookup: the one way to find a tenant's connection by name."""
from __future__ import annotations

import pytest

from connections.services.access.lookup import ConnectionNotFound, find_connection
from tests.setup.conftest import make_connection, make_credential, tenant  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db, pytest.mark.mailservers]


def test_find_connection(make_connection, tenant) -> None:
    inbound = make_connection("imap", "ssl_tls", "plain", name="shared")
    outbound = make_connection("smtp", "ssl_tls", "plain", name="shared")
    only_in = make_connection("pop3", "ssl_tls", "plain", name="Only-In")
    with pytest.raises(ConnectionNotFound, match="both an inbound and an outbound") as exc:
        find_connection(tenant=tenant.slug, name="shared")
    assert "--kind" in exc.value.hint
    assert find_connection(tenant=tenant.slug, name="shared", kind="inbound") == inbound
    assert find_connection(tenant=tenant.slug, name="shared", kind="outbound") == outbound
    assert find_connection(tenant=tenant.slug, name="Only-In") == only_in
    with pytest.raises(ConnectionNotFound) as exc:
        find_connection(tenant=tenant.slug, name="only-in")
    assert "Only-In" in exc.value.hint
    with pytest.raises(ConnectionNotFound, match="No tenant"):
        find_connection(tenant="no-such-tenant", name="shared")
