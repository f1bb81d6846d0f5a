"""Exactly once: a worker killed between store and post-processing, UIDVALIDITY changes,
two pollers on one mailbox."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection as db_connection

from connections.models import MailboxLock, PollOutcome, PollRun, StoredMessage
from connections.services.inbound import faults
from connections.services.inbound.poll import poll
from connections.services.inbound.result import PollResult

from .mails import make_mail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _let_lock_expire() -> None:
    """The lock timeout passes (deterministic: the clock of a loaded machine is not)."""
    from datetime import timedelta

    from django.utils import timezone

    assert MailboxLock.objects.update(expires_at=timezone.now() - timedelta(seconds=1)) >= 1


@pytest.mark.parametrize("mode", ["mark_read", "delete", "move"])
def test_imap_worker_killed_between_store_and_post_processing(mail_servers, mailbox, make_inbound, mode):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"k{i}") for i in range(4)])
    conn = make_inbound(address, password, post_processing=mode, archive_folder="Done", lock_timeout=600)
    with pytest.raises(faults.Interrupt), faults.installed(faults.interrupt_at("stored")):
        poll(connection_id=conn.pk)
    # Stored and committed, but the server was not touched and the lock was left behind.
    assert StoredMessage.objects.filter(connection=conn, post_processed_at__isnull=True).count() == 4
    assert len(mail_servers.flags(address)) == 4
    assert not any("\\Seen" in f for f in mail_servers.flags(address).values())
    assert MailboxLock.objects.count() >= 1
    assert PollRun.objects.get(connection=conn).outcome == PollOutcome.RUNNING
    # While the dead worker's lock is fresh, a poll is refused…
    locked = poll(connection_id=conn.pk)
    assert locked.outcome == PollOutcome.LOCKED
    _let_lock_expire()  # …once it expired (the lock timeout passed), the next poll takes it over.
    result = poll(connection_id=conn.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert result.stored == 0 and result.recovered == 4
    dead = PollRun.objects.filter(connection=conn).order_by("started_at").first()
    assert dead.outcome == PollOutcome.FAILED and "worker stopped" in dead.error
    assert StoredMessage.objects.filter(connection=conn).count() == 4  # no duplicate, no loss
    assert not StoredMessage.objects.filter(connection=conn, post_processed_at__isnull=True).exists()
    flags = mail_servers.flags(address)
    if mode == "mark_read":
        assert len(flags) == 4 and all("\\Seen" in f for f in flags.values())
    else:
        assert flags == {}
    if mode == "move":
        assert len(mail_servers.flags(address, folder="Done")) == 4


def test_pop3_worker_killed_before_quit(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"p{i}") for i in range(3)])
    conn = make_inbound(address, password, protocol="pop3", post_processing="delete", lock_timeout=600)
    with pytest.raises(faults.Interrupt), faults.installed(faults.interrupt_at("before_quit")):
        poll(connection_id=conn.pk)
    # The DELEs were never applied (no QUIT): the mails are still there, stored once.
    assert len(mail_servers.flags(address)) == 3
    assert StoredMessage.objects.filter(connection=conn, post_processed_at__isnull=True).count() == 3
    _let_lock_expire()
    result = poll(connection_id=conn.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert (result.stored, result.recovered) == (0, 3)
    assert mail_servers.flags(address) == {}
    assert StoredMessage.objects.filter(connection=conn).count() == 3
    assert not StoredMessage.objects.filter(connection=conn, post_processed_at__isnull=True).exists()


def test_uidvalidity_change_resyncs_without_duplicates(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    folder = "Shared"
    originals = [make_mail(f"u{i}") for i in range(3)]
    mail_servers.append(address, originals, folder=folder)
    conn = make_inbound(address, password, folder=folder, selection="all", post_processing="keep")
    assert poll(connection_id=conn.pk).stored == 3
    conn.refresh_from_db()
    old_validity = conn.imap_uidvalidity
    # Recreate the folder: same mails, new UIDVALIDITY; plus one new mail.
    from connections.mail.imap import IMAPClient

    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain", username=address)
    with IMAPClient(settings, password) as client:
        client.select("INBOX")
        client._require().delete(f'"{folder}"')  # no DELETE-folder helper in the client
    time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock (seconds)
    mail_servers.append(address, [*originals, make_mail("brand new")], folder=folder)
    result = poll(connection_id=conn.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    conn.refresh_from_db()
    assert conn.imap_uidvalidity != old_validity
    assert result.stored == 1 and result.skipped == 3
    assert StoredMessage.objects.filter(connection=conn).count() == 4
    # Every row now carries the new identity, and the next poll asks only above the stored UIDs.
    assert set(StoredMessage.objects.filter(connection=conn).values_list("uidvalidity", flat=True)) == {conn.imap_uidvalidity}
    assert not conn.imap_resync
    again = poll(connection_id=conn.pk)
    assert (again.stored, again.fetched, again.skipped) == (0, 0, 0)


def test_two_concurrent_pollers_one_gets_locked(mail_servers, mailbox, make_inbound, settings):
    settings.INBOUND_FETCH_BATCH = 5
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"c{i}", body="x" * 2000) for i in range(60)])
    conn = make_inbound(address, password, post_processing="mark_read")
    # A second connection of the same mailbox (same host + user + folder) competes too.
    twin = make_inbound(address, password, post_processing="mark_read", protocol="imap", protection="starttls_mandatory")
    results: dict[str, PollResult] = {}
    barrier = threading.Barrier(3)

    def run(name: str, cid: int) -> None:
        try:
            barrier.wait()
            results[name] = poll(connection_id=cid)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=run, args=("a", conn.pk)), threading.Thread(target=run, args=("b", conn.pk)),
               threading.Thread(target=run, args=("c", twin.pk))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    outcomes = sorted(r.outcome for r in results.values())
    assert outcomes.count(PollOutcome.SUCCESS) == 1, {k: (v.outcome, v.error) for k, v in results.items()}
    assert outcomes.count(PollOutcome.LOCKED) == 2
    winner = next(r for r in results.values() if r.outcome == PollOutcome.SUCCESS)
    assert winner.stored == 60
    assert StoredMessage.objects.filter(connection_id=winner.connection_id).count() == 60
    assert not MailboxLock.objects.exists()  # released at the end


def test_pending_mail_moved_away_by_a_person_does_not_block(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"gone{i}") for i in range(2)])
    conn = make_inbound(address, password, post_processing="move", archive_folder="Done", lock_timeout=60)
    with pytest.raises(faults.Interrupt), faults.installed(faults.interrupt_at("stored")):
        poll(connection_id=conn.pk)
    MailboxLock.objects.all().delete()  # (the dead worker's lock; expiry is tested above)
    # Meanwhile someone deletes one of the two mails in their mail program.
    from connections.mail.imap import IMAPClient

    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain", username=address)
    with IMAPClient(settings, password) as client:
        client.select("INBOX")
        client.delete([min(mail_servers.flags(address))])
    result = poll(connection_id=conn.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert result.recovered == 2 and result.stored == 0
    assert mail_servers.flags(address) == {} and len(mail_servers.flags(address, folder="Done")) == 1
    assert not StoredMessage.objects.filter(connection=conn, post_processed_at__isnull=True).exists()


def test_killed_poll_leaves_no_orphan_files(mail_servers, mailbox, make_inbound, settings):
    """The next batch is fetched and written ahead; a poll that dies removes those files."""
    import os

    from django.core.files.storage import default_storage

    settings.INBOUND_FETCH_BATCH = 2
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"o{i}", attachment=b"x" * 100) for i in range(6)])
    conn = make_inbound(address, password, post_processing="mark_read", lock_timeout=60)
    with pytest.raises(faults.Interrupt), faults.installed(faults.interrupt_at("stored")):
        poll(connection_id=conn.pk)
    stored = list(StoredMessage.objects.filter(connection=conn))
    assert len(stored) == 2  # the first batch
    referenced = {m.raw.name for m in stored}
    from connections.models import Attachment

    referenced |= {a.file.name for a in Attachment.objects.filter(message__connection=conn)}
    on_disk = set()
    for root, _dirs, names in os.walk(default_storage.location):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), default_storage.location)
            if rel.startswith(("raw", "attachments")):
                on_disk.add(rel)
    assert referenced <= on_disk
    orphans = [f for f in on_disk - referenced if _written_by(conn, f)]
    assert not orphans, orphans


def _written_by(conn, rel: str) -> bool:
    # Files of other tests live in the same MEDIA_ROOT; ours are newer than this connection.
    import os

    from django.core.files.storage import default_storage

    return os.path.getmtime(os.path.join(default_storage.location, rel)) >= conn.created_at.timestamp()
