"""A real Celery worker sends the outbox: enqueue -> on commit -> send_outbox -> Postfix -> IMAP."""
from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from django.core import mail
from django.db import transaction

from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import enqueue
from connections.tasks import dispatch_outbox
from tests.celery_worker import wait_until

from .test_sending_postfix import _connection, _read_back

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _status(pk: int) -> str:
    return OutboxMessage.objects.values_list("status", flat=True).get(pk=pk)


def test_enqueue_on_commit_is_sent_by_the_worker(tenantmail_worker, mail_servers, tenant):
    conn, _ = _connection(mail_servers, tenant)
    rcpt, _ = mail_servers.add_user()
    with transaction.atomic():
        message = enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject="via worker", text="x")
        # nothing leaves before the commit
        assert _status(message.pk) == OutboxStatus.QUEUED
    wait_until(lambda: _status(message.pk) == OutboxStatus.SENT, message="the worker to send the message")
    [raw] = _read_back(mail_servers, rcpt)
    assert message_from_bytes(raw, policy=policy.default)["Subject"] == "via worker"


def test_rolled_back_enqueue_sends_nothing(tenantmail_worker, mail_servers, tenant):
    conn, _ = _connection(mail_servers, tenant)
    rcpt, _ = mail_servers.add_user()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject="never", text="x")
            raise RuntimeError("the caller's transaction fails")
    assert not OutboxMessage.objects.filter(subject="never").exists()
    # a later message on the same connection goes through; the rolled-back one never existed
    later = enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject="later", text="x")
    wait_until(lambda: _status(later.pk) == OutboxStatus.SENT, message="the later message")
    delivered = _read_back(mail_servers, rcpt)
    assert [message_from_bytes(r, policy=policy.default)["Subject"] for r in delivered] == ["later"]


def test_beat_dispatch_picks_up_messages_queued_without_a_kick(tenantmail_worker, mail_servers, tenant):
    conn, _ = _connection(mail_servers, tenant)
    rcpt, _ = mail_servers.add_user()
    ids = [enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject=f"d{i}", text="x", dispatch=False).pk
           for i in range(3)]
    dispatch_outbox.delay()
    wait_until(lambda: all(_status(pk) == OutboxStatus.SENT for pk in ids), message="dispatch + send")
    assert len(_read_back(mail_servers, rcpt, count=3)) == 3


def test_django_send_mail_through_the_backend_and_the_worker(tenantmail_worker, mail_servers, tenant, settings):
    conn, _ = _connection(mail_servers, tenant, name="smtp-main")
    rcpt, _ = mail_servers.add_user()
    settings.EMAIL_BACKEND = "connections.backends.TenantMailBackend"
    settings.TENANTMAIL_EMAIL_TENANT = tenant.slug
    settings.TENANTMAIL_EMAIL_CONNECTION = "smtp-main"
    assert mail.send_mail("Über Django", "Hallo", None, [rcpt], html_message="<p>Hallo</p>") == 1
    [raw] = _read_back(mail_servers, rcpt)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Über Django"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Hallo</p>"
    assert OutboxMessage.objects.get(connection=conn).status == OutboxStatus.SENT
