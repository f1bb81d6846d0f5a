"""Storage: the uniqueness constraint as the exactly-once guard, files, durability switch."""
from __future__ import annotations

import os

import pytest
from django.core.files.storage import default_storage

from connections.models import Attachment, InboundConnection, StoredMessage
from connections.services import storage
from connections.services.storage import FetchedMail, store_batch

from .mails import make_mail

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conn(tenant, make_credential) -> InboundConnection:
    return InboundConnection.objects.create(tenant=tenant, name="st", host="h", credential_name=make_credential())


def _mail(uid: int, raw: bytes) -> FetchedMail:
    return FetchedMail(server_key=f"imap:7:{uid}", size=len(raw), data=raw, uidvalidity=7, uid=uid)


def test_second_store_of_the_same_mail_is_a_duplicate_and_leaves_no_files(conn):
    raw = make_mail("dup", attachment=b"A" * 5000, attachment_name="a.bin")
    first = store_batch(connection=conn, mails=[_mail(1, raw), _mail(2, make_mail("other"))])
    assert sorted(o.status for o in first) == ["stored", "stored"]
    files_before = _files()
    second = store_batch(connection=conn, mails=[_mail(1, raw), _mail(3, make_mail("third"))])
    assert sorted(o.status for o in second) == ["duplicate", "stored"]
    assert StoredMessage.objects.filter(connection=conn).count() == 3
    assert Attachment.objects.filter(message__connection=conn).count() == 1
    # The duplicate's freshly written raw + attachment files were removed again.
    assert len(_files()) == len(files_before) + 1
    message = StoredMessage.objects.get(connection=conn, uid=1)
    with message.raw.open("rb") as fh:
        assert fh.read() == raw
    assert message.size == len(raw) and message.raw_sha256 == storage.FetchedMail(
        server_key="x", size=0, data=raw).sha256()


def test_long_non_ascii_attachment_names_fit_the_file_system(conn):
    name = "報告書" * 60 + ".pdf"  # 540 bytes in UTF-8: too long for a file name as is
    raw = make_mail("long", attachment=b"%PDF", attachment_name=name)
    outcome = store_batch(connection=conn, mails=[_mail(9, raw)])[0]
    assert outcome.status == "stored"
    att = Attachment.objects.get(message_id=outcome.pk)
    assert att.filename.endswith(".pdf") and len(att.file.name) <= 255
    with att.file.open("rb") as fh:
        assert fh.read() == b"%PDF"


def test_fsync_only_when_the_server_copy_is_deleted(conn, settings):
    assert not storage._must_sync(conn)
    conn.post_processing = "delete"
    assert storage._must_sync(conn)
    settings.INBOUND_FSYNC = "never"
    assert not storage._must_sync(conn)
    settings.INBOUND_FSYNC = "always"
    conn.post_processing = "keep"
    assert storage._must_sync(conn)
    outcome = store_batch(connection=conn, mails=[_mail(5, make_mail("synced"))])[0]
    assert outcome.status == "stored"
    path = default_storage.path(StoredMessage.objects.get(pk=outcome.pk).raw.name)
    assert storage._syncfs(path)  # Linux: one syncfs(2) per batch


def _files() -> list[str]:
    found = []
    for root, _dirs, names in os.walk(default_storage.location):
        found.extend(os.path.join(root, n) for n in names)
    return found


@pytest.mark.parametrize("perms", [0o644, 0o600, 0o666])
def test_stored_files_get_the_upload_permissions_whatever_the_umask(settings, perms):
    """Files are created with FILE_UPLOAD_PERMISSIONS directly; the extra chmod only runs
    when the umask would strip some of those bits (here 0o022 strips 0o666's write bits)."""
    settings.FILE_UPLOAD_PERMISSIONS = perms
    name = storage._save_bytes(f"raw/perm-test-{perms:o}.eml", b"x")
    try:
        assert os.stat(default_storage.path(name)).st_mode & 0o777 == perms
    finally:
        default_storage.delete(name)
    assert storage._umask() == int(open("/proc/self/status").read().split("Umask:")[1].split()[0], 8)


def test_a_batch_goes_in_with_binary_copy_and_reads_back_the_same(conn):
    """PostgreSQL: batches are inserted with a binary COPY (every column's type is known to
    psycopg); what comes back equals what was parsed, JSON, dates and text included."""
    from django.db import connection

    from connections.services.parsing.parse import parse_bytes

    assert connection.vendor == "postgresql"
    for model in (StoredMessage, Attachment):
        assert all(storage._copy_type(f, connection) for f in model._meta.concrete_fields), model
    raws = [make_mail("binäry \\ tab\t", body="line one\r\nback\\slash\ttab ünïcode", attachment=b"\x00\x01" * 900,
                      attachment_name="d.bin"),
            b"From: broken <<@>\r\nSubject: =?x-unknown?q?caf=E9?=\r\nDate: never\r\n\r\nbody\r\n"]
    outcomes = store_batch(connection=conn, mails=[_mail(10 + i, raw) for i, raw in enumerate(raws)])
    assert [o.status for o in outcomes] == ["stored", "stored"]
    for outcome, raw in zip(outcomes, raws):
        row = StoredMessage.objects.get(pk=outcome.pk)
        parsed = parse_bytes(raw)
        assert (row.subject, row.from_header, row.text_body, row.date, row.parse_problems) == (
            parsed.subject, parsed.from_header, parsed.text_body, parsed.date, parsed.problems)
        assert isinstance(row.parse_problems, list) and row.search_indexed is False
    att = Attachment.objects.get(message_id=outcomes[0].pk)
    assert (att.filename, att.size) == ("d.bin", 1800)
