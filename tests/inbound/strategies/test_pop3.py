"""POP3 polls against the real Dovecot: UIDL identity, delete or keep."""
from __future__ import annotations

import pytest

from connections.models import PollOutcome, StoredMessage
from connections.services.inbound.poll import poll

from ..mails import make_mail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


@pytest.mark.parametrize("protection", ["ssl_tls", "starttls_mandatory"])
def test_pop3_keep_remembers_by_uidl(mail_servers, mailbox, make_inbound, protection):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"pop {i}", attachment=b"abc" if i == 0 else None) for i in range(3)])
    conn = make_inbound(address, password, protocol="pop3", protection=protection, post_processing="keep")
    first = poll(connection_id=conn.pk)
    assert first.outcome == PollOutcome.SUCCESS, first.error
    assert (first.fetched, first.stored) == (3, 3)
    copies = set(mail_servers.server_copies(address).values())
    for message in StoredMessage.objects.filter(connection=conn):
        with message.raw.open("rb") as fh:
            assert fh.read() in copies
        assert message.uidl and message.server_key == f"pop3:{message.uidl}"
        assert message.post_processed_at is not None
    assert len(mail_servers.flags(address)) == 3  # still on the server
    mail_servers.append(address, [make_mail("pop new")])
    second = poll(connection_id=conn.pk)
    assert (second.fetched, second.stored, second.skipped) == (1, 1, 3)
    assert StoredMessage.objects.filter(connection=conn).count() == 4


def test_pop3_delete(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"pop {i}") for i in range(4)])
    conn = make_inbound(address, password, protocol="pop3", post_processing="delete", max_messages=3)
    first = poll(connection_id=conn.pk)
    assert (first.stored, first.outcome) == (3, PollOutcome.SUCCESS)
    assert len(mail_servers.flags(address)) == 1
    second = poll(connection_id=conn.pk)
    assert second.stored == 1
    assert mail_servers.flags(address) == {}
    assert not StoredMessage.objects.filter(connection=conn, post_processed_at__isnull=True).exists()
    assert StoredMessage.objects.filter(connection=conn).count() == 4


def test_pop3_oversized(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail("huge", attachment=b"y" * 200_000)])
    mail_servers.append(address, [make_mail("fine")])
    conn = make_inbound(address, password, protocol="pop3", post_processing="delete", max_message_size=50_000)
    result = poll(connection_id=conn.pk)
    assert (result.stored, result.oversized) == (2, 1)
    message = StoredMessage.objects.get(connection=conn, subject="huge")
    assert message.oversized and message.size > 200_000
    left = mail_servers.server_copies(address)  # the oversized mail is not deleted
    assert len(left) == 1 and b"Subject: huge" in next(iter(left.values()))
    again = poll(connection_id=conn.pk)
    assert (again.stored, again.skipped) == (0, 1)
