"""Alert webhooks and TENANTMAIL_BLOCKED_NETWORKS: a blocked URL is one recorded attempt with a
clear message and no retry; the loopback receiver works by default."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import AlertDelivery, AlertSettings, InboundConnection
from connections.services.monitoring import watchdog
from connections.tasks import deliver_alert_webhook
from tests.celery_worker import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _failing(tenant) -> None:
    now = timezone.now()
    InboundConnection.objects.create(tenant=tenant, name="box-1", host="imap.down.example", port=993,
                                     last_poll_at=now, last_poll_ok=False, consecutive_failures=3,
                                     backoff_until=now + timedelta(minutes=4), last_error="Connection refused")


def _refused_once(tenant, network: str) -> AlertDelivery:
    delivery = wait_until(lambda: AlertDelivery.objects.filter(tenant=tenant, attempts__gte=1).first(),
                          message="the refused alert webhook call")
    assert delivery.attempts == 1 and delivery.delivered_at is None
    assert f"is in the blocked network {network} (TENANTMAIL_BLOCKED_NETWORKS); nothing was sent" in delivery.last_error
    # permanent: the task finishes (no Celery retry), and only records one more attempt
    result = deliver_alert_webhook.apply(args=[delivery.pk])
    assert result.successful() and result.result is False
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    return delivery


def test_metadata_address_refused_by_default(tenant, tenantmail_worker):
    AlertSettings.objects.create(tenant=tenant, webhook_url="http://169.254.169.254/latest/meta-data/",
                                 failing_after=1)
    _failing(tenant)
    watchdog.run_pass()
    _refused_once(tenant, "169.254.0.0/16")


def test_loopback_receiver_works_by_default_refused_when_listed(tenant, receiver, tenantmail_worker, settings):
    AlertSettings.objects.create(tenant=tenant, webhook_url=receiver.url, failing_after=1)
    _failing(tenant)
    watchdog.run_pass()
    wait_until(lambda: receiver.calls, message="the alert webhook call on loopback")
    settings.TENANTMAIL_BLOCKED_NETWORKS = "169.254.0.0/16,127.0.0.0/8"
    AlertDelivery.objects.filter(tenant=tenant).delete()
    delivery = AlertDelivery.objects.create(tenant=tenant, url=receiver.url, payload={"alerts": []})
    result = deliver_alert_webhook.apply(args=[delivery.pk])
    assert result.successful() and result.result is False
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.delivered_at is None
    assert "is in the blocked network 127.0.0.0/8 (TENANTMAIL_BLOCKED_NETWORKS)" in delivery.last_error
    assert len(receiver.calls) == 1
