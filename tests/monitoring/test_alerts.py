"""The watchdog and alerts against the real database, the real worker and a loopback webhook."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from connections.models import Alert, AlertSettings, AlertState, InboundConnection, AlertDelivery
from connections.services.monitoring import alerts, runtime, watchdog
from tests.celery_worker import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _failing(tenant, n: int, host: str = "imap.down.example", failures: int = 3) -> None:
    now = timezone.now()
    InboundConnection.objects.bulk_create([
        InboundConnection(tenant=tenant, name=f"box-{i:04d}", host=host, port=993, last_poll_at=now,
                          last_poll_ok=False, consecutive_failures=failures, backoff_until=now + timedelta(minutes=4),
                          last_error="Cannot connect to imap.down.example:993: Connection refused")
        for i in range(n)
    ])


def _tenant_alerts(tenant):
    return Alert.objects.filter(tenant=tenant)


def test_500_failing_on_one_host_make_one_signed_notification(tenant, receiver, tenantmail_worker, monkeypatch):
    monkeypatch.setenv("ACME_ALERT_WEBHOOK_SECRET", receiver.secret)
    AlertSettings.objects.create(tenant=tenant, webhook_url=receiver.url, webhook_secret_env="ACME_ALERT_WEBHOOK_SECRET",
                                 failing_after=3)
    _failing(tenant, 500)
    watchdog.run_pass()
    alert = _tenant_alerts(tenant).get()
    assert alert.state == AlertState.FIRING and len(alert.subjects) == 500
    assert "500 inbound connections on imap.down.example are failing" in alert.title
    wait_until(lambda: receiver.calls, timeout=30, message="the webhook call")
    assert len(receiver.calls) == 1
    call = receiver.calls[0]
    assert call["verified"], "the HMAC signature did not verify"
    [sent] = call["payload"]["alerts"]
    assert sent["event"] == "fired" and len(sent["subjects"]) == 500
    assert call["payload"]["tenant"] == tenant.slug
    stored = AlertDelivery.objects.get(tenant=tenant)
    assert receiver.secret not in str(stored.payload) and receiver.secret not in stored.url  # never stored

    # A second pass with the same problem: no new notification, the same alert.
    watchdog.run_pass()
    assert _tenant_alerts(tenant).count() == 1
    assert AlertDelivery.objects.filter(tenant=tenant).count() == 1

    # Fixed: resolved, one notification.
    InboundConnection.objects.filter(tenant=tenant).update(last_poll_ok=True, consecutive_failures=0,
                                                           backoff_until=None, last_error="")
    watchdog.run_pass()
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_at
    wait_until(lambda: len(receiver.calls) == 2, timeout=30, message="the resolve webhook call")
    assert receiver.calls[1]["verified"] and receiver.calls[1]["payload"]["alerts"][0]["event"] == "resolved"


def test_below_failing_after_no_alert_but_never_ok(tenant):
    AlertSettings.objects.create(tenant=tenant, failing_after=5)
    _failing(tenant, 1, failures=2)
    watchdog.run_pass()
    assert not _tenant_alerts(tenant).exists()
    conn = InboundConnection.objects.get(tenant=tenant)
    assert runtime.inbound_state(conn).state == runtime.BACKING_OFF


def test_webhook_retried_until_accepted(tenant, receiver, tenantmail_worker, monkeypatch, settings):
    monkeypatch.setenv("HOOK_SECRET", receiver.secret)
    receiver.fail_next = 1
    AlertSettings.objects.create(tenant=tenant, webhook_url=receiver.url, webhook_secret_env="HOOK_SECRET",
                                 failing_after=1)
    _failing(tenant, 2, failures=1)
    # The first try fails (503); Celery retries after 10 s.
    watchdog.run_pass()
    wait_until(lambda: AlertDelivery.objects.filter(tenant=tenant, delivered_at__isnull=False).exists(),
               timeout=40, message="the retried webhook call")
    delivery = AlertDelivery.objects.get(tenant=tenant)
    assert delivery.attempts == 2 and delivery.delivered_at and receiver.calls[0]["verified"]


def test_reminder_after_remind_every_hours_and_not_when_acknowledged(tenant):
    AlertSettings.objects.create(tenant=tenant, failing_after=1, remind_every_hours=2)
    _failing(tenant, 3, failures=1)
    now = timezone.now()
    changes = alerts.sync(findings=watchdog.inbound_findings(now=now), now=now)
    assert [e for e, a in changes.events if a.tenant_id == tenant.pk] == ["fired"]
    later = now + timedelta(hours=1)
    assert not [a for e, a in alerts.sync(findings=watchdog.inbound_findings(now=now), now=later).events
                if a.tenant_id == tenant.pk]
    much_later = now + timedelta(hours=3)
    events = [e for e, a in alerts.sync(findings=watchdog.inbound_findings(now=now), now=much_later).events
              if a.tenant_id == tenant.pk]
    assert events == ["reminder"]
    alert = _tenant_alerts(tenant).get()
    assert alerts.acknowledge(alert_ids=[alert.pk], user=None) == 1
    events = [e for e, a in alerts.sync(findings=watchdog.inbound_findings(now=now),
                                        now=much_later + timedelta(hours=5)).events if a.tenant_id == tenant.pk]
    assert events == []


def test_overdue_connection_is_found(tenant):
    old = timezone.now() - timedelta(hours=2)
    InboundConnection.objects.create(tenant=tenant, name="late", host="imap.late.example", schedule_every=60,
                                     last_poll_at=old, last_poll_ok=True)
    found = [f for f in watchdog.inbound_findings(now=timezone.now()) if f.tenant_id == tenant.pk]
    assert [f.kind for f in found] == ["inbound_overdue"]
    assert found[0].subjects == ["late"]


def test_outbox_stuck_and_failed_are_found(tenant):
    from connections.models import OutboundConnection, OutboundSendState, OutboxMessage

    conn = OutboundConnection.objects.create(tenant=tenant, name="smtp", host="smtp.example", default_from="a@b.example")
    now = timezone.now()
    with transaction.atomic():
        OutboxMessage.objects.create(tenant=tenant, connection=conn, from_address="a@b.example", to=["x@y.example"],
                                     status="sending", claimed_at=now - timedelta(hours=2))
        OutboxMessage.objects.create(tenant=tenant, connection=conn, from_address="a@b.example", to=["x@y.example"],
                                     status="failed", claimed_at=now - timedelta(minutes=5))
        OutboxMessage.objects.create(tenant=tenant, connection=conn, from_address="a@b.example", to=["x@y.example"],
                                     status="queued", next_attempt_at=now - timedelta(hours=3))
        OutboundSendState.objects.create(connection=conn, consecutive_failures=1, last_error="554 rejected")
    kinds = sorted(f.kind for f in watchdog.outbound_findings(now=now) if f.tenant_id == tenant.pk)
    assert kinds == ["outbox_old", "outbox_stuck"]  # one failed send: fewer than failing_after (3)
    AlertSettings.objects.create(tenant=tenant, failing_after=1)
    kinds = sorted(f.kind for f in watchdog.outbound_findings(now=now) if f.tenant_id == tenant.pk)
    assert kinds == ["outbox_failed", "outbox_old", "outbox_stuck"]


@pytest.mark.smoke
def test_undecryptable_credentials_found_in_one_query(tenant, django_assert_num_queries):
    from cryptography.fernet import Fernet

    from connections.fields import Undecryptable
    from connections.models import UserCredential

    foreign = Fernet(Fernet.generate_key()).encrypt(b"secret")  # a key FERNET_KEYS does not hold
    for i in range(30):
        UserCredential.objects.create(tenant=tenant, name=f"ok-{i:02d}", username="u", password="pw",
                                      deployed_password="pw", refresh_token=None if i % 2 else "rt")
    UserCredential.objects.create(tenant=tenant, name="bad-password", username="u",
                                  password=Undecryptable(foreign, "test"), deployed_password="pw")
    UserCredential.objects.create(tenant=tenant, name="bad-deployed", username="u", password="pw",
                                  deployed_password=Undecryptable(foreign, "test"))
    UserCredential.objects.create(tenant=tenant, name="bad-refresh-token", username="u", password="pw",
                                  refresh_token=Undecryptable(foreign, "test"))
    with django_assert_num_queries(1):  # not one per credential (nor per deferred secret)
        found = [f for f in watchdog.credential_findings(now=timezone.now()) if f.tenant_id == tenant.pk]
    assert [(f.kind, f.subjects) for f in found] == [
        ("credential_undecryptable", ["bad-deployed", "bad-password", "bad-refresh-token"])]
    # The same verdict as decrypting them.
    assert sorted(c.name for c in UserCredential.objects.filter(tenant=tenant) if c.decryption_problem()) == \
        found[0].subjects


def test_beat_is_stale_after_three_ticks_and_never_before_15_s(settings):
    from connections.services.monitoring import settings as mon

    settings.POLL_DISPATCH_INTERVAL = 2.0  # the default: a beat a few seconds late is no alert
    assert mon.beat_stale_after() == 15.0
    settings.POLL_DISPATCH_INTERVAL = 10.0
    assert mon.beat_stale_after() == 30.0


def test_dead_beat_and_no_worker_are_system_alerts(db):
    findings = {f.key for f in watchdog.system_findings(now=timezone.now())}
    assert {"system:beat", "system:workers"} <= findings


@pytest.mark.smoke
def test_certificate_expiring_within_14_days_is_found(tenant):
    def report(days: int) -> dict:
        not_after = (timezone.now() + timedelta(days=days)).isoformat()
        return {"ok": True, "steps": [{"name": "tcp", "ok": True, "detail": {}},
                                      {"name": "tls", "ok": True, "detail": {"not_after": not_after}}]}

    InboundConnection.objects.create(tenant=tenant, name="soon", host="imap.soon.example", last_test_report=report(5))
    InboundConnection.objects.create(tenant=tenant, name="later", host="imap.later.example",
                                     last_test_report=report(60))
    found = [f for f in watchdog.certificate_findings(now=timezone.now()) if f.tenant_id == tenant.pk]
    assert [(f.kind, f.subjects) for f in found] == [("cert_expiry", ["soon"])]
    assert "imap.soon.example expires" in found[0].title


def test_queue_depth_and_oldest_task_age_from_redis(db, settings):
    import uuid as _uuid

    from tenantmail.celery import app

    queue = f"tm-age-{_uuid.uuid4().hex[:8]}"  # no worker reads it
    assert watchdog.queue_oldest_age(queue=queue) is None
    app.send_task("connections.tasks.watchdog_tick", queue=queue)
    app.send_task("connections.tasks.watchdog_tick", queue=queue)
    try:
        age = watchdog.queue_oldest_age(queue=queue)
        assert age is not None and age < 60
        settings.CELERY_TASK_DEFAULT_QUEUE = queue
        app.conf.task_default_queue = queue
        settings.ALERT_QUEUE_OLDEST_MAX_SECONDS = 0.0
        settings.ALERT_QUEUE_DEPTH_MAX = 1
        wait_until(lambda: (watchdog.queue_oldest_age() or 0) > 0, message="some age")
        keys = {f.key for f in watchdog.system_findings(now=timezone.now())}
        assert {"system:queue", "system:queue_age"} <= keys
    finally:
        app.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE = __import__("os").environ[
            "CELERY_TASK_DEFAULT_QUEUE"]
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete(queue)

