"""Fixtures of the outbound tests: a tenant, the fault-injecting SMTP server, connections, a template."""
from __future__ import annotations

import uuid

import pytest

from connections.models import OutboundConnection, OutboxTemplate, Tenant

from .faultserver import FaultServer


@pytest.fixture(scope="session")
def fault_server():
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def fault(fault_server):
    fault_server.reset()
    return fault_server


@pytest.fixture
def tenant(db) -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:8]}"
    return Tenant.objects.create(name=f"Tenant {slug}", slug=slug)


@pytest.fixture
def make_connection(tenant):
    def make(**overrides) -> OutboundConnection:
        values = dict(
            tenant=tenant, name=f"smtp-{uuid.uuid4().hex[:6]}", host="127.0.0.1", port=1,
            protection="off", authentication="none", timeout=5,
            default_from="Acme Support <support@example.test>",
        )
        values.update(overrides)
        return OutboundConnection.objects.create(**values)

    return make


@pytest.fixture
def fault_connection(make_connection, fault) -> OutboundConnection:
    return make_connection(port=fault.port, timeout=2)


@pytest.fixture
def invoice(tenant):
    """A message template of the tenant (templates and enqueue_many tests)."""
    return OutboxTemplate.objects.create(
        tenant=tenant, name="invoice", subject="Invoice {{ number }}\nfor {{ customer }}",
        text_body="Dear {{ customer }},\nplease pay {{ amount }}.\n",
        html_body="<p>Dear {{ customer }}, please pay <b>{{ amount }}</b>.</p>",
    )


@pytest.fixture
def no_worker_kicks(monkeypatch):
    """For tests that drive sending themselves: a Celery worker that an earlier test of the
    session left running must not take the messages that recovery or an operator's action
    puts back in the queue (kicks are queued on commit in transaction=True tests)."""
    from connections.services.outbound import dispatch, recovery

    monkeypatch.setattr(recovery, "_kick", lambda connection_id: None)
    monkeypatch.setattr(dispatch, "kick", lambda *, connection_id: None)
