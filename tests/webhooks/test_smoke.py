"""Quick checks that also run on SQLite (smoke pass): a delivery run, the API, a purge."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import ApiScope, InboundConnection, StoredMessage, Tenant, Webhook, WebhookDelivery
from connections.services import webhooks
from connections.services.access import api_tokens
from connections.services.messages import retention
from connections.services.webhooks.signing import verify
from tests.messages import mailfactory
from tests.webhooks.conftest import make_mail

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@pytest.fixture
def conn(db) -> InboundConnection:
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    return InboundConnection.objects.create(tenant=tenant, name="orders", host="imap.acme.test")


def test_delivery_run_posts_signed_bodies(conn, receiver):
    mailfactory.store(connection=conn, raw=make_mail(0))  # before the webhook: not sent
    hook = webhooks.save_webhook(webhook=Webhook(tenant=conn.tenant, connection=conn, url=receiver.url, secret="k"))
    stored = [mailfactory.store(connection=conn, raw=make_mail(n)) for n in (1, 2)]
    report = webhooks.run(webhook_id=hook.pk)
    assert report.delivered == 2 and report.created == 2
    assert [json.loads(r.body)["data"]["id"] for r in receiver.requests] == [m.pk for m in stored]
    assert all(verify(secret="k", body=r.body, header=r.headers["X-TenantMail-Signature"]) for r in receiver.requests)
    assert webhooks.run(webhook_id=hook.pk).attempted == 0
    assert WebhookDelivery.objects.filter(webhook=hook, status="delivered").count() == 2


def test_api_list_and_purge(conn, client):
    for n in range(3):
        mailfactory.store(connection=conn, raw=make_mail(n, attachment=b"data"))
    token = api_tokens.create_token(tenant=conn.tenant, name="t", scopes=[ApiScope.MESSAGES_READ]).secret
    response = client.get("/api/v1/messages/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and len(response.json()["results"]) == 3
    StoredMessage.objects.update(fetched_at=timezone.now() - timedelta(days=10))
    InboundConnection.objects.filter(pk=conn.pk).update(keep_days=7)
    result = retention.purge()
    assert (result.messages, result.attachments) == (3, 3) and result.bytes > 0
    item = client.get("/api/v1/messages/", HTTP_AUTHORIZATION=f"Bearer {token}").json()["results"][0]
    assert item["purged"] is True
    assert client.get(f"/api/v1/messages/{item['id']}/raw", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 410


def test_old_delivery_log_rows_are_pruned(conn, settings):
    settings.WEBHOOK_LOG_RETENTION_DAYS = 30
    hook = webhooks.save_webhook(webhook=Webhook(tenant=conn.tenant, connection=conn, url="http://127.0.0.1:9/",
                                                 secret="k"))
    rows = [WebhookDelivery.objects.create(tenant=conn.tenant, webhook=hook, event="message.stored", object_id=n,
                                           status=status) for n, status in enumerate(["delivered", "failed",
                                                                                         "pending", "delivered"])]
    WebhookDelivery.objects.filter(pk__in=[r.pk for r in rows[:3]]).update(
        created_at=timezone.now() - timedelta(days=31))
    assert retention.purge().deliveries_pruned == 2
    assert sorted(WebhookDelivery.objects.values_list("object_id", flat=True)) == [2, 3]


def test_deliveries_wait_for_the_running_poll(conn, receiver):
    from connections.models import PollRun

    hook = webhooks.save_webhook(webhook=Webhook(tenant=conn.tenant, connection=conn, url=receiver.url, secret="k"))
    mailfactory.store(connection=conn, raw=make_mail(1))
    run = PollRun.objects.create(tenant=conn.tenant, connection=conn, started_at=timezone.now())
    report = webhooks.run(webhook_id=hook.pk)
    assert report.attempted == 0 and "poll" in report.stopped and not receiver.requests
    assert Webhook.objects.get(pk=hook.pk).lease_until is not None  # kicks meanwhile find it busy
    PollRun.objects.filter(pk=run.pk).update(outcome="success", finished_at=timezone.now())
    Webhook.objects.filter(pk=hook.pk).update(lease_until=None)  # (the follow-up's time)
    assert webhooks.run(webhook_id=hook.pk).delivered == 1
