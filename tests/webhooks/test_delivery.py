"""Webhooks end to end: real Dovecot poll → signal → Celery worker → real HTTP receiver."""
from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from connections import signals
from connections.models import DeliveryStatus, Webhook, WebhookDelivery, WebhookState
from connections.services import webhooks
from connections.services.inbound.poll import poll
from connections.services.webhooks.signing import verify
from tests.celery_worker import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]

SECRET = "whsec-test-1234"


def _hook(conn, url: str) -> Webhook:
    return webhooks.save_webhook(webhook=Webhook(tenant=conn.tenant, connection=conn, url=url, secret=SECRET))


def test_poll_posts_one_signed_webhook_per_stored_mail(polled, receiver, tenantmail_worker):
    conn, _ = polled(3)
    _hook(conn, receiver.url)
    seen = []
    signals.message_stored.connect(lambda sender, **kw: seen.append(kw), weak=False, dispatch_uid="t-seen")
    try:
        result = poll(connection_id=conn.pk, trigger="manual")
    finally:
        signals.message_stored.disconnect(dispatch_uid="t-seen")
    assert result.stored == 3, result.summary()
    assert sorted(i for kw in seen for i in kw["message_ids"]) == sorted(result.stored_ids)
    assert all(kw["connection_id"] == conn.pk for kw in seen)

    wait_until(lambda: len(receiver.delivered()) == 3, message="3 webhook deliveries")
    bodies = []
    for req in receiver.requests:
        assert req.headers["X-TenantMail-Event"] == "message.stored"
        assert verify(secret=SECRET, body=req.body, header=req.headers["X-TenantMail-Signature"])
        assert not verify(secret="wrong", body=req.body, header=req.headers["X-TenantMail-Signature"])
        document = json.loads(req.body)
        assert document["delivery"] == req.headers["X-TenantMail-Delivery"]
        bodies.append(document["data"])
    data = sorted(bodies, key=lambda d: d["id"])[0]
    assert data["id"] in result.stored_ids
    assert data["tenant"] == conn.tenant.slug and data["connection"] == conn.name
    assert data["from"] == "Orders <orders@shop.example>"
    assert data["to"] == ["Zoë <in@example.test>", "b@example.test"] and data["cc"] == ["c@example.test"]
    assert data["subject"].startswith("Order ") and data["message_id"].startswith("<order-")
    assert data["date"].startswith("2026-12-07T10:00:00") and data["size"] > 0
    [att] = data["attachments"]
    assert att["filename"].startswith("invoice-") and att["content_type"] == "application/pdf" and att["size"] > 0
    assert att["url"].endswith(f"/api/v1/messages/{data['id']}/attachments/0")
    assert data["raw_url"].endswith(f"/api/v1/messages/{data['id']}/raw")
    deliveries = WebhookDelivery.objects.filter(webhook__connection=conn)
    wait_until(lambda: deliveries.filter(status=DeliveryStatus.DELIVERED).count() == 3, message="3 recorded")
    assert all(d.response_code == 200 and d.attempts == 1 and d.latency_ms is not None for d in deliveries)


def test_500s_are_retried_with_the_same_delivery_id(polled, receiver, tenantmail_worker, settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.2
    conn, _ = polled(1)
    _hook(conn, receiver.url)
    receiver.statuses = [500, 503]
    poll(connection_id=conn.pk, trigger="manual")
    wait_until(lambda: receiver.delivered(), message="delivery after two 500s")
    assert [r.status for r in receiver.requests] == [500, 503, 200]
    assert len({r.headers["X-TenantMail-Delivery"] for r in receiver.requests}) == 1
    delivery = wait_until(lambda: WebhookDelivery.objects.filter(webhook__connection=conn,
                                                                 status=DeliveryStatus.DELIVERED).first())
    assert delivery.attempts == 3 and delivery.response_code == 200
    assert Webhook.objects.get(connection=conn).consecutive_failures == 0


def test_disabled_after_n_failures_then_replayed(polled, receiver, tenantmail_worker, settings, client):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.1
    settings.WEBHOOK_DISABLE_AFTER = 3
    conn, _ = polled(1)
    hook = _hook(conn, receiver.url)
    receiver.always = 500
    poll(connection_id=conn.pk, trigger="manual")
    wait_until(lambda: Webhook.objects.get(pk=hook.pk).state == WebhookState.DISABLED, message="auto-disable")
    hook.refresh_from_db()
    assert "3 failed attempts" in hook.state_detail and "HTTP 500" in hook.state_detail
    assert webhooks.run(webhook_id=hook.pk).attempted == 0  # a disabled webhook sends nothing
    assert len(receiver.requests) == 3
    delivery = WebhookDelivery.objects.get(webhook=hook)
    assert delivery.status == DeliveryStatus.PENDING and delivery.response_code == 500

    # The admin shows the state; enabling and replaying from there delivers it.
    admin = get_user_model().objects.create_superuser("root", "root@example.test", "pw-root-123")
    client.force_login(admin)
    page = client.get(f"/admin/connections/webhook/{hook.pk}/change/")
    assert page.status_code == 200 and b"Disabled after failures" in page.content
    receiver.always = None
    response = client.post("/admin/connections/webhook/", {"action": "enable_webhooks", "_selected_action": [hook.pk]})
    assert response.status_code == 302
    wait_until(lambda: receiver.delivered(), message="delivery after enabling")
    first = receiver.delivered()[0].headers["X-TenantMail-Delivery"]
    response = client.post("/admin/connections/webhookdelivery/",
                           {"action": "replay_deliveries", "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    wait_until(lambda: len(receiver.delivered()) == 2, message="replayed delivery")
    assert receiver.delivered()[1].headers["X-TenantMail-Delivery"] == first == str(delivery.uuid)
    wait_until(lambda: WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.DELIVERED,
                                                      replayed_at__isnull=False).exists(), message="replay recorded")


def test_many_mails_one_request_at_a_time(polled, receiver, tenantmail_worker, settings):
    settings.INBOUND_FETCH_BATCH = 10  # many batches: many signals, many kicks
    conn, _ = polled(60, attachment=None)
    _hook(conn, receiver.url)
    result = poll(connection_id=conn.pk, trigger="manual")
    assert result.stored == 60
    wait_until(lambda: len(receiver.delivered()) == 60, timeout=60, message="60 deliveries")
    assert receiver.max_in_flight == 1
    assert len({r.headers["X-TenantMail-Delivery"] for r in receiver.requests}) == 60


def test_lost_signal_is_made_up_by_the_sweep(polled, receiver, tenantmail_worker):
    """A worker killed between the commit and the signal: beat's sweep still delivers."""
    conn, _ = polled(2)
    _hook(conn, receiver.url)
    receivers = signals.message_stored.receivers[:]
    signals.message_stored.receivers = []
    try:
        poll(connection_id=conn.pk, trigger="manual")
    finally:
        signals.message_stored.receivers = receivers
        signals.message_stored.sender_receivers_cache.clear()
    assert not receiver.requests
    assert webhooks.sweep() == 1
    wait_until(lambda: len(receiver.delivered()) == 2, message="deliveries after the sweep")


def test_new_webhook_does_not_replay_history(polled, receiver):
    conn, _ = polled(2)
    poll(connection_id=conn.pk, trigger="manual")
    hook = _hook(conn, receiver.url)
    assert webhooks.run(webhook_id=hook.pk).attempted == 0


def _outbound(mail_servers, tenant, **overrides):
    import uuid

    from connections.models import OutboundConnection, UserCredential
    from connections.services.setup import credentials

    address, password = mail_servers.add_user()
    cred = credentials.save_artifact(credential=UserCredential(tenant=tenant, name=f"c-{uuid.uuid4().hex[:6]}",
                                                               username=address), password=password)
    credentials.deploy(credential_id=cred.pk, user=None)
    values = dict(tenant=tenant, name=f"out-{uuid.uuid4().hex[:6]}", host=mail_servers.host,
                  port=mail_servers.ports["submission"], protection="starttls_mandatory", authentication="plain",
                  credential_name=cred.name, trusted_ca=mail_servers.ca_pem, timeout=10, default_from=address)
    values.update(overrides)
    return OutboundConnection.objects.create(**values), address


def test_outbox_events_on_the_tenant_webhook(mail_servers, tenant, receiver, tenantmail_worker, settings):
    from connections.services.outbound import enqueue, sending

    settings.OUTBOX_MAX_ATTEMPTS = 1
    hook = webhooks.save_webhook(webhook=Webhook(tenant=tenant, url=receiver.url, secret=SECRET))
    finished = []
    signals.outbox_message_finished.connect(lambda sender, signal, **kw: finished.append(kw), weak=False,
                                            dispatch_uid="t-f")
    try:
        good, _ = _outbound(mail_servers, tenant)
        rcpt, _ = mail_servers.add_user()
        sent = enqueue.enqueue(connection_id=good.pk, to=[rcpt], subject="Invoice 17", text="Hello", dispatch=False)
        sending.send_due(connection_id=good.pk)
        # A server that is not there: a transient error, and with one attempt allowed, failed.
        closed, _ = _outbound(mail_servers, tenant, port=1, protection="off", allow_plain_without_tls=True)
        failed = enqueue.enqueue(connection_id=closed.pk, to=[rcpt], subject="Never", text="x", dispatch=False)
        sending.send_due(connection_id=closed.pk)
    finally:
        signals.outbox_message_finished.disconnect(dispatch_uid="t-f")
    assert finished == [{"connection_id": good.pk, "sent": [sent.pk], "failed": []},
                        {"connection_id": closed.pk, "sent": [], "failed": [failed.pk]}]
    wait_until(lambda: len(receiver.delivered()) == 2, message="outbox deliveries")
    events = {}
    for req in receiver.requests:
        assert verify(secret=SECRET, body=req.body, header=req.headers["X-TenantMail-Signature"])
        events[req.headers["X-TenantMail-Event"]] = json.loads(req.body)["data"]
    assert events["outbox.sent"]["id"] == sent.pk and events["outbox.sent"]["status"] == "sent"
    recipient = events["outbox.sent"]["recipients"][rcpt]  # the record's per-recipient result (issue 19)
    assert list(events["outbox.sent"]["recipients"]) == [rcpt]
    assert recipient["status"] == "accepted" and str(recipient["code"]).startswith("2") and recipient["queue_id"]
    assert events["outbox.failed"]["id"] == failed.pk and events["outbox.failed"]["last_error"]
    assert WebhookDelivery.objects.filter(webhook=hook).count() == 2
