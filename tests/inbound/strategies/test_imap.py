"""IMAP polls against the real Dovecot: selection, limits, every post-processing mode."""
from __future__ import annotations

import pytest

from connections.models import PollOutcome, PollRun, StoredMessage
from connections.services.inbound.poll import poll

from ..mails import make_mail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _raw(message: StoredMessage) -> bytes:
    with message.raw.open("rb") as fh:
        return fh.read()


def test_poll_stores_mail_with_bodies_attachments_and_raw_bytes(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mails = [make_mail(f"mail {i}", body=f"body {i}", attachment=b"\x00\x01" * 100 if i == 1 else None,
                       attachment_name="Résumé.pdf") for i in range(3)]
    mail_servers.append(address, mails)
    conn = make_inbound(address, password, post_processing="mark_read", selection="unread")
    result = poll(connection_id=conn.pk, trigger="test")
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert (result.fetched, result.stored, result.skipped, result.failed) == (3, 3, 0, 0)
    copies = mail_servers.server_copies(address)
    stored = {m.uid: m for m in StoredMessage.objects.filter(connection=conn)}
    assert set(stored) == set(copies)
    for uid, message in stored.items():
        assert _raw(message) == copies[uid]
        assert message.parsed and message.post_processed_at is not None
        assert message.subject.startswith("mail ")
        assert message.from_header == "Sender <sender@example.test>"
        assert message.date.isoformat() == "2026-11-21T08:00:00+00:00"
        assert message.parse_problems == [] and message.size == len(copies[uid])
        assert message.server_key == f"imap:{message.uidvalidity}:{uid}"
    with_att = next(m for m in stored.values() if m.subject == "mail 1")
    att = with_att.attachments.get()
    assert att.filename == "Résumé.pdf" and att.size == 200
    with att.file.open("rb") as fh:
        assert fh.read() == b"\x00\x01" * 100
    # Marked read on the server; the run is recorded; the next poll finds nothing new.
    assert all("\\Seen" in f for f in mail_servers.flags(address).values())
    run = PollRun.objects.get(pk=result.poll_run_id)
    assert run.outcome == PollOutcome.SUCCESS and run.stored == 3 and run.finished_at and run.bytes > 0
    again = poll(connection_id=conn.pk)
    assert (again.outcome, again.fetched, again.stored) == (PollOutcome.SUCCESS, 0, 0)
    conn.refresh_from_db()
    assert conn.last_poll_ok and conn.next_poll_at and conn.consecutive_failures == 0


def test_selection_all_with_mark_read_never_stores_twice(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail("seen already")], seen=True)
    mail_servers.append(address, [make_mail("unseen")])
    unread_only = make_inbound(address, password, selection="unread", post_processing="keep")
    r = poll(connection_id=unread_only.pk)
    assert r.stored == 1
    assert StoredMessage.objects.get(connection=unread_only).subject == "unseen"
    everything = make_inbound(address, password, selection="all", post_processing="mark_read")
    r = poll(connection_id=everything.pk)
    assert r.stored == 2
    r = poll(connection_id=everything.pk)  # read mails stay in the folder, below the UID floor
    assert (r.stored, r.skipped, r.fetched) == (0, 0, 0)


def test_max_messages_per_poll(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"m{i}") for i in range(7)])
    conn = make_inbound(address, password, max_messages=3, post_processing="mark_read")
    assert poll(connection_id=conn.pk).stored == 3
    assert poll(connection_id=conn.pk).stored == 3
    assert poll(connection_id=conn.pk).stored == 1
    assert poll(connection_id=conn.pk).stored == 0
    assert StoredMessage.objects.filter(connection=conn).count() == 7
    subjects = sorted(StoredMessage.objects.filter(connection=conn).values_list("subject", flat=True))
    assert subjects == [f"m{i}" for i in range(7)]


@pytest.mark.parametrize("mode", ["mark_read", "delete", "move", "move_and_mark_read", "keep"])
def test_post_processing_modes(mail_servers, mailbox, make_inbound, mode):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"{mode} {i}") for i in range(3)])
    conn = make_inbound(address, password, selection="unread", post_processing=mode, archive_folder="Archive")
    first = poll(connection_id=conn.pk)
    assert first.outcome == PollOutcome.SUCCESS, first.error
    assert first.stored == 3
    inbox_flags = mail_servers.flags(address)
    if mode == "mark_read":
        assert len(inbox_flags) == 3 and all("\\Seen" in f for f in inbox_flags.values())
    elif mode == "delete":
        assert inbox_flags == {}
    elif mode in ("move", "move_and_mark_read"):
        assert inbox_flags == {}
        archived = mail_servers.flags(address, folder="Archive")
        assert len(archived) == 3
        seen = all("\\Seen" in f for f in archived.values())
        assert seen is (mode == "move_and_mark_read")
    else:  # keep: unchanged on the server, remembered by UID
        assert len(inbox_flags) == 3 and not any("\\Seen" in f for f in inbox_flags.values())
    assert not StoredMessage.objects.filter(connection=conn, post_processed_at__isnull=True).exists()
    second = poll(connection_id=conn.pk)
    assert (second.stored, second.fetched) == (0, 0)
    if mode == "keep":
        assert second.skipped == 3
    assert StoredMessage.objects.filter(connection=conn).count() == 3


def test_oversized_mail_is_recorded_with_headers_and_marked(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    big = make_mail("too big", attachment=b"x" * 300_000)
    mail_servers.append(address, [big, make_mail("small")])
    conn = make_inbound(address, password, max_message_size=100_000, post_processing="delete")
    result = poll(connection_id=conn.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert (result.stored, result.oversized) == (2, 1)
    over = StoredMessage.objects.get(connection=conn, subject="too big")
    assert over.oversized and over.size > 300_000
    assert any("oversized" in p for p in over.parse_problems)
    assert _raw(over).startswith(b"From:") or b"Subject: too big" in _raw(over)
    assert not StoredMessage.objects.get(connection=conn, subject="small").oversized
    # Delete removed the small mail but left the oversized one (only its headers are stored).
    left = mail_servers.server_copies(address)
    assert len(left) == 1 and b"Subject: too big" in next(iter(left.values()))
    assert over.post_processed_at is not None
    assert poll(connection_id=conn.pk).stored == 0  # remembered, not fetched again


def test_large_mail_is_streamed_and_identical(mail_servers, mailbox, make_inbound, settings):
    settings.INBOUND_STREAM_THRESHOLD = 64 * 1024
    address, password = mailbox
    payload = bytes(range(256)) * 4096  # 1 MB
    mail_servers.append(address, [make_mail("streamed", attachment=payload, attachment_name="blob.bin")])
    conn = make_inbound(address, password, post_processing="mark_read")
    result = poll(connection_id=conn.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    msg = StoredMessage.objects.get(connection=conn)
    assert _raw(msg) == next(iter(mail_servers.server_copies(address).values()))
    att = msg.attachments.get()
    with att.file.open("rb") as fh:
        assert fh.read() == payload
    assert msg.text_body.strip() == "body"


def test_bad_login_fails_and_backs_off(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    conn = make_inbound(address, password + "-wrong")
    first = poll(connection_id=conn.pk)
    assert first.outcome == PollOutcome.FAILED and first.error
    assert password not in first.error
    conn.refresh_from_db()
    assert conn.consecutive_failures == 1 and conn.backoff_until is not None
    assert 55 <= (conn.backoff_until - conn.last_poll_at).total_seconds() <= 65
    poll(connection_id=conn.pk)
    conn.refresh_from_db()
    assert conn.consecutive_failures == 2
    assert 115 <= (conn.backoff_until - conn.last_poll_at).total_seconds() <= 125
    assert conn.next_poll_at >= conn.backoff_until
    # One success resets it.
    from connections.models import UserCredential
    from connections.services.setup import credentials

    cred = UserCredential.objects.get(tenant=conn.tenant, name=conn.credential_name)
    credentials.save_artifact(credential=cred, password=password)
    credentials.deploy(credential_id=cred.pk, user=None)
    ok = poll(connection_id=conn.pk)
    assert ok.outcome == PollOutcome.SUCCESS, ok.error
    conn.refresh_from_db()
    assert conn.consecutive_failures == 0 and conn.backoff_until is None and conn.last_error == ""


def test_deferred_parsing(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail("later", body="parsed later", attachment=b"zz", attachment_name="z.txt")])
    conn = make_inbound(address, password, post_processing="mark_read")
    result = poll(connection_id=conn.pk, parse=False)
    assert result.stored == 1
    msg = StoredMessage.objects.get(connection=conn)
    assert not msg.parsed and msg.subject == "" and msg.post_processed_at is not None
    from connections.services.inbound.deferred import parse_pending

    assert parse_pending(connection_id=conn.pk) == 1
    msg.refresh_from_db()
    assert msg.parsed and msg.subject == "later" and msg.text_body.strip() == "parsed later"
    assert msg.attachments.get().filename == "z.txt"
    assert parse_pending(connection_id=conn.pk) == 0


def test_empty_poll_bookkeeping_is_four_statements(mail_servers, mailbox, make_inbound):
    """An empty poll's database work: the connection, the credential, one statement that
    opens the history row and takes the lock, one that releases the lock, closes the row
    and updates the connection (no BEGIN/COMMIT round trips). History is still complete."""
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    from connections.models import InboundConnection, MailboxLock

    address, password = mailbox
    conn = make_inbound(address, password)
    assert poll(connection_id=conn.pk).outcome == PollOutcome.SUCCESS  # first UIDVALIDITY recorded
    with CaptureQueriesContext(db) as queries:
        result = poll(connection_id=conn.pk, trigger="test")
    assert result.outcome == PollOutcome.SUCCESS and result.fetched == 0, result.error
    assert len(queries.captured_queries) <= 4, [q["sql"][:120] for q in queries.captured_queries]
    run = PollRun.objects.get(pk=result.poll_run_id)
    assert run.outcome == PollOutcome.SUCCESS and run.trigger == "test"
    assert run.finished_at >= run.started_at and run.duration_ms is not None
    assert not MailboxLock.objects.exists()
    conn = InboundConnection.objects.get(pk=conn.pk)
    assert conn.last_poll_ok and conn.next_poll_at > run.finished_at
    assert PollRun.objects.filter(connection=conn).count() == 2
