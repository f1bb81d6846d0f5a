"""The outbox's models: a connection with messages cannot be deleted, its tenant can."""
from __future__ import annotations

import pytest

from connections.models import OutboxMessage

from .helpers import queue_one


@pytest.mark.django_db
def test_a_connection_with_messages_cannot_be_deleted_but_its_tenant_can(make_connection, tenant):
    from django.db.models import RestrictedError

    conn = make_connection()
    queue_one(conn)
    with pytest.raises(RestrictedError):
        conn.delete()
    tenant.delete()
    assert not OutboxMessage.objects.exists()
