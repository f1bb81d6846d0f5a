"""Configuration as code — contract keys keep_days, webhook {url, secret_env}, keep_sent_days."""
from __future__ import annotations

import pytest

from connections.models import InboundConnection, OutboundConnection, Webhook
from connections.services.setup import config

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

DOC = """
tenants:
  - slug: acme
    name: ACME Corp
    inbound:
      - name: orders
        host: imap.acme.example
        keep_days: 90
        webhook: {url: "https://erp.example/hooks/mail", secret_env: ACME_ORDERS_HOOK_SECRET}
    outbound:
      - name: notifications
        host: smtp.acme.example
        from: noreply@acme.example
        keep_sent_days: 30
"""


def test_apply_export_round_trip():
    env = {"ACME_ORDERS_HOOK_SECRET": "hook-secret-1"}
    plan = config.apply(config.load(DOC), environ=env)
    assert plan.applied
    inbound = InboundConnection.objects.get(name="orders")
    assert inbound.keep_days == 90
    assert OutboundConnection.objects.get(name="notifications").keep_sent_days == 30
    hook = Webhook.objects.get(connection=inbound)
    assert (hook.url, hook.secret, hook.secret_env) == ("https://erp.example/hooks/mail", "hook-secret-1",
                                                       "ACME_ORDERS_HOOK_SECRET")
    assert config.apply(config.load(DOC), environ=env).empty  # nothing changed
    plan = config.apply(config.load(DOC), environ={"ACME_ORDERS_HOOK_SECRET": "rotated"})
    assert [str(c) for c in plan.changes] == ["update inbound acme/orders: webhook.secret: (secret) -> (secret)"]
    assert Webhook.objects.get(connection=inbound).secret == "rotated"
    exported = config.export()["tenants"][0]
    assert exported["inbound"][0]["webhook"] == {"url": "https://erp.example/hooks/mail",
                                                 "secret_env": "ACME_ORDERS_HOOK_SECRET"}
    assert exported["inbound"][0]["keep_days"] == 90 and exported["outbound"][0]["keep_sent_days"] == 30
    text = config.dump(config.export())
    assert "rotated" not in text and "hook-secret" not in text


def test_errors_name_the_place():
    bad = DOC.replace('url: "https://erp.example/hooks/mail"', 'url: "ftp://x", extra: 1').replace(
        "keep_days: 90", "keep_days: -1")
    with pytest.raises(config.ConfigValidationError) as info:
        config.apply(config.load(bad), environ={})
    errors = "\n".join(info.value.errors)
    assert "tenants[0].inbound[0].webhook.url: required: an http:// or https:// URL" in errors
    assert "tenants[0].inbound[0].webhook.extra: unknown key" in errors
    assert "tenants[0].inbound[0].keep_days" in errors
    with pytest.raises(config.ConfigValidationError) as info:
        config.apply(config.load(DOC), environ={})
    assert "tenants[0].inbound[0].webhook.secret_env: the environment variable ACME_ORDERS_HOOK_SECRET is not set" \
        in "\n".join(info.value.errors)
    assert not Webhook.objects.exists()
