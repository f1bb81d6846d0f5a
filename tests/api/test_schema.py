"""Schemathesis against /api/v1/schema/: generated requests to every operation, through the
WSGI app, with a real token of a tenant that has stored mail, an outbound connection and
another tenant's rows around; no server error, every response as the schema says."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from connections.models import ApiScope, InboundConnection, OutboundConnection, Tenant
from connections.services.access import api_tokens
from tests.messages import mailfactory
from tests.webhooks.conftest import make_mail

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@pytest.fixture
def api_schema(db):
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from tenantmail.wsgi import application

    # As Django's test client does: keep the test's connection (and transaction) open
    # across the requests the WSGI app serves.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_headers(db):
    acme = Tenant.objects.create(name="Acme", slug="acme")
    other = Tenant.objects.create(name="Other", slug="other")
    for tenant in (acme, other):
        conn = InboundConnection.objects.create(tenant=tenant, name=f"{tenant.slug}-in", host="imap.example.test")
        for n in range(3):
            mailfactory.store(connection=conn, raw=make_mail(n, attachment=b"%PDF-1.4\n" if n else None))
        OutboundConnection.objects.create(tenant=tenant, name="notifications", host="smtp.example.test",
                                          default_from="noreply@example.test", enabled=False)
    token = api_tokens.create_token(tenant=acme, name="schemathesis", scopes=ApiScope.values)
    return {"Authorization": f"Bearer {token.secret}"}


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_conforms_to_its_schema(case, api_headers, settings_override):
    case.call_and_validate(headers=api_headers, checks=CHECKS)


@pytest.fixture
def settings_override(settings):
    settings.API_RATE_LIMIT = "100000/min"  # generated requests are many; throttling is tested apart
    return settings
