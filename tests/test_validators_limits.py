"""Zero messages per SMTP session or per poll is refused, not silently treated as one."""
from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ValidationError

from connections.models import InboundConnection, OutboundConnection, Tenant
from connections.services.setup import config

pytestmark = pytest.mark.django_db


def _tenant() -> Tenant:
    return Tenant.objects.create(slug=f"t-{uuid.uuid4().hex[:6]}", name="T")


def test_max_per_session_zero_is_refused_by_the_model():
    conn = OutboundConnection(tenant=_tenant(), name="smtp-x", host="smtp.example.test", protection="ssl_tls",
                              authentication="none", default_from="a@example.test", max_per_session=0)
    with pytest.raises(ValidationError) as info:
        conn.full_clean()
    assert info.value.message_dict["max_per_session"] == ["Send at least one message per SMTP session."]
    conn.max_per_session = 1
    conn.full_clean()


DOC = """
tenants:
  - slug: acme
    name: ACME Corp
    outbound:
      - name: smtp-main
        host: smtp.acme.example
        authentication: none
        from: orders@acme.example
        max_per_session: {per_session}
    inbound:
      - name: orders
        protocol: imap
        host: imap.acme.example
        authentication: none
        max_messages: {per_poll}
        schedule: {{every: 300}}
"""


def test_apply_config_refuses_zero_per_session_and_per_poll():
    with pytest.raises(config.ConfigValidationError) as info:
        config.apply(config.load(DOC.format(per_session=0, per_poll=0)), environ={})
    text = str(info.value)
    assert "tenants[0].outbound[0].max_per_session: Send at least one message per SMTP session." in text
    assert "tenants[0].inbound[0].max_messages: Fetch at least one message per poll." in text
    assert not OutboundConnection.objects.exists() and not InboundConnection.objects.exists()
    assert config.apply(config.load(DOC.format(per_session=1, per_poll=1)), environ={}).applied
