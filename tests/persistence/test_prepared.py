"""persistence.prepared: the fast paths' statements are really prepared on PostgreSQL, show in
CaptureQueriesContext like the ORM's, and fail with Django's exceptions."""
from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from connections.models import InboundConnection, Tenant
from connections.services.persistence import inbound as inbound_rows
from connections.services.persistence.prepared import prepared_cursor

pytestmark = pytest.mark.django_db(transaction=True)


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_the_poll_start_is_prepared_once_and_reused():
    tenant = Tenant.objects.create(name="P", slug=f"p-{uuid.uuid4().hex[:8]}")
    conn = InboundConnection.objects.create(tenant=tenant, name="c", host="h")
    inbound_rows.load_for_poll(connection_id=conn.pk)
    loads = [s for s in _prepared_statements() if "EXISTS(SELECT 1 FROM" in s]
    assert len(loads) == 1, _prepared_statements()
    for _ in range(3):
        assert inbound_rows.load_for_poll(connection_id=conn.pk).connection.pk == conn.pk
    assert [s for s in _prepared_statements() if "EXISTS(SELECT 1 FROM" in s] == loads


def test_prepared_statements_are_captured_like_the_orms():
    tenant = Tenant.objects.create(name="Q", slug=f"q-{uuid.uuid4().hex[:8]}")
    conn = InboundConnection.objects.create(tenant=tenant, name="c", host="h")
    with CaptureQueriesContext(connection) as queries:
        inbound_rows.load_for_poll(connection_id=conn.pk)
    assert len(queries.captured_queries) == 1 and "EXISTS(SELECT 1 FROM" in queries.captured_queries[0]["sql"]


def test_errors_come_out_as_djangos():
    tenant = Tenant.objects.create(name="R", slug=f"r-{uuid.uuid4().hex[:8]}")
    table = connection.ops.quote_name(Tenant._meta.db_table)
    with pytest.raises(IntegrityError), prepared_cursor(connection) as cursor:
        cursor.execute(f"INSERT INTO {table} (name, slug, active, created_at) VALUES (%s, %s, true, now())",
                       ["R2", tenant.slug], prepare=True)
    assert Tenant.objects.filter(slug=tenant.slug).count() == 1  # the connection is still usable
