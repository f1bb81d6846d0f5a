"""Webhook deliveries and TENANTMAIL_BLOCKED_NETWORKS: a blocked receiver address is a failed
attempt with a clear message, permanent (no retries), and the webhook is disabled until fixed."""
from __future__ import annotations

import pytest

from connections.models import DeliveryStatus, Webhook, WebhookDelivery, WebhookState
from connections.services import webhooks
from connections.services.inbound.poll import poll
from tests.celery_worker import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _hook(conn, url: str) -> Webhook:
    return webhooks.save_webhook(webhook=Webhook(tenant=conn.tenant, connection=conn, url=url, secret="whsec-t-1"))


def _refused(hook: Webhook, network: str) -> WebhookDelivery:
    delivery = wait_until(lambda: WebhookDelivery.objects.filter(webhook=hook, status=DeliveryStatus.FAILED).first(),
                          message="the refused delivery")
    assert delivery.attempts == 1 and delivery.next_attempt_at is None and delivery.response_code is None
    assert f"is in the blocked network {network} (TENANTMAIL_BLOCKED_NETWORKS); nothing was sent" in delivery.last_error
    hook.refresh_from_db()
    assert hook.state == WebhookState.DISABLED and "blocked network" in hook.state_detail
    return delivery


def test_metadata_address_refused_by_default(polled, tenantmail_worker, settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.1
    conn, _ = polled(2)
    hook = _hook(conn, "http://169.254.169.254/latest/meta-data/")
    assert poll(connection_id=conn.pk, trigger="manual").stored == 2
    _refused(hook, "169.254.0.0/16")
    # permanent: one attempt in all, the other delivery waits (pending) for the fixed URL
    assert webhooks.run(webhook_id=hook.pk).attempted == 0
    assert sorted(WebhookDelivery.objects.filter(webhook=hook).values_list("attempts", flat=True)) == [0, 1]


def test_loopback_receiver_works_by_default_refused_when_listed(polled, receiver, tenantmail_worker, settings):
    conn, _ = polled(1)
    hook = _hook(conn, receiver.url)
    poll(connection_id=conn.pk, trigger="manual")
    wait_until(lambda: receiver.delivered(), message="delivery to the loopback receiver")

    other, _ = polled(1)
    blocked = webhooks.save_webhook(webhook=Webhook(tenant=other.tenant, connection=other, url=receiver.url,
                                                    secret="whsec-t-1", enabled=False))
    poll(connection_id=other.pk, trigger="manual")  # the mail server is on loopback too: poll first
    settings.TENANTMAIL_BLOCKED_NETWORKS = "169.254.0.0/16,127.0.0.0/8"
    Webhook.objects.filter(pk=blocked.pk).update(enabled=True)
    report = webhooks.run(webhook_id=blocked.pk)
    assert report.failed_attempts == 1 and report.delivered == 0
    _refused(blocked, "127.0.0.0/8")
    assert len(receiver.requests) == 1  # nothing reached the receiver
    assert Webhook.objects.get(pk=hook.pk).state == WebhookState.ACTIVE
