"""IMAP polls with selection "all" ask the server only for UIDs above what is stored
(issue 21): an empty poll's work does not grow with the mailbox."""
from __future__ import annotations

import pytest

from connections.models import InboundConnection, PollOutcome, StoredMessage
from connections.services.inbound.poll import poll

from ..mails import make_mail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _floor(conn: InboundConnection) -> tuple[int | None, str]:
    conn.refresh_from_db()
    return conn.imap_uid_next, conn.imap_uid_scope


def test_selection_all_searches_only_above_the_floor(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"m{i}") for i in range(5)])
    conn = make_inbound(address, password, selection="all", post_processing="keep")
    assert poll(connection_id=conn.pk).stored == 5
    uids = sorted(mail_servers.server_copies(address))
    floor, scope = _floor(conn)
    assert floor == uids[-1] + 1 and scope.startswith(f"{conn.imap_uidvalidity}:")

    mail_servers.append(address, [make_mail("new 1"), make_mail("new 2")])
    r = poll(connection_id=conn.pk)
    assert (r.outcome, r.stored, r.skipped) == (PollOutcome.SUCCESS, 2, 0)  # the 5 old ones not even listed
    assert _floor(conn)[0] == uids[-1] + 3

    # Below the floor nothing is asked for: a row removed behind the poller's back is not
    # fetched again (which shows that the old UIDs are no longer searched).
    StoredMessage.objects.filter(connection=conn, uid=uids[0]).delete()
    assert poll(connection_id=conn.pk).stored == 0

    # A floor of another folder, server or UIDVALIDITY is void: everything is listed again.
    InboundConnection.objects.filter(pk=conn.pk).update(imap_uid_scope="1:elsewhere")
    r = poll(connection_id=conn.pk)
    assert (r.stored, r.skipped) == (1, 6)
    assert _floor(conn)[1].startswith(f"{conn.imap_uidvalidity}:")


def test_floor_waits_for_mails_left_by_max_messages(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"m{i}") for i in range(7)])
    conn = make_inbound(address, password, selection="all", post_processing="keep", max_messages=3)
    uids = sorted(mail_servers.server_copies(address))
    assert poll(connection_id=conn.pk).stored == 3
    assert _floor(conn)[0] == uids[3]  # the first mail not fetched yet
    assert poll(connection_id=conn.pk).stored == 3
    assert poll(connection_id=conn.pk).stored == 1
    assert poll(connection_id=conn.pk).stored == 0
    assert _floor(conn)[0] == uids[-1] + 1
    assert sorted(StoredMessage.objects.filter(connection=conn).values_list("uid", flat=True)) == uids


def test_empty_folder_floor_from_uidnext(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    conn = make_inbound(address, password, selection="all", post_processing="keep")
    assert poll(connection_id=conn.pk).stored == 0
    floor = _floor(conn)[0]
    assert floor and floor >= 1
    mail_servers.append(address, [make_mail("first")])
    assert poll(connection_id=conn.pk).stored == 1


def test_unread_selection_is_not_bounded(mail_servers, mailbox, make_inbound):
    """Unread mails below any floor still count: a mail marked unread again is polled."""
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"m{i}") for i in range(3)])
    conn = make_inbound(address, password, selection="unread", post_processing="keep")
    assert poll(connection_id=conn.pk).stored == 3
    assert _floor(conn)[0] is None
    first = min(mail_servers.server_copies(address))
    StoredMessage.objects.filter(connection=conn, uid=first).delete()
    assert poll(connection_id=conn.pk).stored == 1

