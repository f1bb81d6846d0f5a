"""Two tenants, their members and connections, and a way to store test mails."""
from __future__ import annotations

import pytest

from connections.models import InboundConnection, Membership, Role, Tenant
from connections.services.messages.indexes import ensure_message_indexes

from . import mailfactory


@pytest.fixture(scope="session")
def message_indexes(django_db_setup, django_db_blocker):
    # The migrations create these indexes too; ensuring them again is harmless (idempotent).
    with django_db_blocker.unblock():
        ensure_message_indexes()


@pytest.fixture
def tenants(db, message_indexes, django_user_model):
    acme = Tenant.objects.create(name="Acme", slug="acme")
    globex = Tenant.objects.create(name="Globex", slug="globex")
    alice = django_user_model.objects.create_user("alice", password="pw-alice-123")
    bob = django_user_model.objects.create_user("bob", password="pw-bob-123")
    Membership.objects.create(user=alice, tenant=acme, role=Role.VIEWER)
    Membership.objects.create(user=bob, tenant=globex, role=Role.ADMIN)
    conn_a = InboundConnection.objects.create(tenant=acme, name="acme-inbox", host="imap.acme.test")
    conn_b = InboundConnection.objects.create(tenant=globex, name="globex-inbox", host="imap.globex.test")
    return {"acme": acme, "globex": globex, "alice": alice, "bob": bob, "conn_a": conn_a, "conn_b": conn_b}


@pytest.fixture
def store():
    return mailfactory.store


@pytest.fixture
def build():
    return mailfactory.build
