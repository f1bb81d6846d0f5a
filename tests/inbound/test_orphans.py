"""Orphan files (written before a commit that never came) are swept; nothing else is."""
from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from connections.errors import TenantMailError
from connections.models import InboundConnection, StoredMessage
from connections.services.inbound import files, orphans
from connections.services.inbound.fetched import FetchedMail, new_spool_file
from connections.services.inbound.storage import store_batch

from .mails import make_mail

pytestmark = pytest.mark.django_db(transaction=True)
DAY = 86400


def _age(name: str, seconds: float) -> None:
    path = default_storage.path(name)
    then = time.time() - seconds
    os.utime(path, (then, then))


def _exists(name: str) -> bool:
    return os.path.exists(default_storage.path(name))


@pytest.fixture(autouse=True)
def own_media_root(settings, tmp_path):
    """A storage of this test's own: the run's others leave files whose rows are gone."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def stored(tenant, make_credential):
    """One stored mail with an attachment; its files made two days old."""
    conn = InboundConnection.objects.create(tenant=tenant, name="orph", host="h", credential_name=make_credential())
    raw = make_mail("kept", attachment=b"K" * 3000, attachment_name="k.bin")
    [outcome] = store_batch(connection=conn, mails=[FetchedMail(server_key="imap:1:1", size=len(raw), data=raw,
                                                                uidvalidity=1, uid=1)])
    message = StoredMessage.objects.get(pk=outcome.pk)
    names = [message.raw.name, *(a.file.name for a in message.attachments.all())]
    for name in names:
        _age(name, 2 * DAY)
    return names


def test_old_orphans_go_fresh_ones_and_referenced_files_stay(stored):
    # What a worker killed between writing the files and the commit leaves behind.
    old_raw = files.save_bytes(files.dated("raw") + "killed.eml", b"raw bytes")
    old_att = files.save_bytes(files.dated("attachments") + "killed-a.bin", b"attachment")
    fresh = files.save_bytes(files.dated("raw") + "in-flight.eml", b"a poll not committed yet")
    _age(old_raw, 2 * DAY)
    _age(old_att, 25 * 3600)
    fh, spool = new_spool_file()
    fh.write(b"half a big mail")
    fh.close()
    os.utime(spool, (time.time() - 2 * DAY,) * 2)

    dry = orphans.sweep_orphan_files(dry_run=True)
    assert (dry.orphans, dry.removed) == (3, 0) and set(dry.names) >= {old_raw, old_att}
    assert _exists(old_raw) and os.path.exists(spool)

    result = orphans.sweep_orphan_files()
    assert (result.orphans, result.removed) == (3, 3)
    assert result.bytes == len(b"raw bytes") + len(b"attachment") + len(b"half a big mail")
    assert not _exists(old_raw) and not _exists(old_att) and not os.path.exists(spool)
    assert _exists(fresh), "younger than the minimum age: perhaps a poll about to commit"
    assert all(_exists(name) for name in stored), "files of stored mails are never touched"
    assert orphans.sweep_orphan_files().orphans == 0


def test_a_minimum_age_under_an_hour_is_refused(stored):
    with pytest.raises(TenantMailError, match="has not committed yet"):
        orphans.sweep_orphan_files(min_age=timedelta(minutes=5))


def test_command_reports_and_removes(stored, capsys):
    orphan = files.save_bytes(files.dated("raw") + "cmd.eml", b"x" * 10)
    _age(orphan, 3 * DAY)
    call_command("sweep_orphan_files", "--dry-run")
    out = capsys.readouterr().out
    assert "1 orphan(s), 10 bytes; would remove 1." in out and orphan in out
    call_command("sweep_orphan_files", "--older-than", "48", "--json")
    data = json.loads(capsys.readouterr().out)
    assert (data["orphans"], data["removed"], data["dry_run"]) == (1, 1, False)
    assert not _exists(orphan) and all(_exists(name) for name in stored)
    with pytest.raises(CommandError, match="at least one hour"):
        call_command("sweep_orphan_files", "--older-than", "0.5")
