"""Storage: the uniqueness constraint as the exactly-once guard, files of a stored batch."""
from __future__ import annotations

import os

import pytest
from django.core.files.storage import default_storage

from connections.models import Attachment, StoredMessage
from connections.services.inbound.fetched import FetchedMail
from connections.services.inbound.storage import store_batch

from .mails import fetched_mail, make_mail

pytestmark = pytest.mark.django_db(transaction=True)


def test_second_store_of_the_same_mail_is_a_duplicate_and_leaves_no_files(conn):
    raw = make_mail("dup", attachment=b"A" * 5000, attachment_name="a.bin")
    first = store_batch(connection=conn, mails=[fetched_mail(1, raw), fetched_mail(2, make_mail("other"))])
    assert sorted(o.status for o in first) == ["stored", "stored"]
    files_before = _files()
    second = store_batch(connection=conn, mails=[fetched_mail(1, raw), fetched_mail(3, make_mail("third"))])
    assert sorted(o.status for o in second) == ["duplicate", "stored"]
    assert StoredMessage.objects.filter(connection=conn).count() == 3
    assert Attachment.objects.filter(message__connection=conn).count() == 1
    # The duplicate's freshly written raw + attachment files were removed again.
    assert len(_files()) == len(files_before) + 1
    message = StoredMessage.objects.get(connection=conn, uid=1)
    with message.raw.open("rb") as fh:
        assert fh.read() == raw
    assert message.size == len(raw) and message.raw_sha256 == FetchedMail(
        server_key="x", size=0, data=raw).sha256()


def test_long_non_ascii_attachment_names_fit_the_file_system(conn):
    name = "報告書" * 60 + ".pdf"  # 540 bytes in UTF-8: too long for a file name as is
    raw = make_mail("long", attachment=b"%PDF", attachment_name=name)
    outcome = store_batch(connection=conn, mails=[fetched_mail(9, raw)])[0]
    assert outcome.status == "stored"
    att = Attachment.objects.get(message_id=outcome.pk)
    assert att.filename.endswith(".pdf") and len(att.file.name) <= 255
    with att.file.open("rb") as fh:
        assert fh.read() == b"%PDF"


def _files() -> list[str]:
    found = []
    for root, _dirs, names in os.walk(default_storage.location):
        found.extend(os.path.join(root, n) for n in names)
    return found
