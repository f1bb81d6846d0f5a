"""Mail files: the durability switch (INBOUND_FSYNC) and the permissions of new files."""
from __future__ import annotations

import os

import pytest
from django.core.files.storage import default_storage

from connections.models import StoredMessage
from connections.services.inbound import files
from connections.services.inbound.storage import store_batch

from .mails import fetched_mail, make_mail

pytestmark = pytest.mark.django_db(transaction=True)


def test_fsync_only_when_the_server_copy_is_deleted(conn, settings):
    assert not files.must_sync(conn)
    conn.post_processing = "delete"
    assert files.must_sync(conn)
    settings.INBOUND_FSYNC = "never"
    assert not files.must_sync(conn)
    settings.INBOUND_FSYNC = "always"
    conn.post_processing = "keep"
    assert files.must_sync(conn)
    outcome = store_batch(connection=conn, mails=[fetched_mail(5, make_mail("synced"))])[0]
    assert outcome.status == "stored"
    path = default_storage.path(StoredMessage.objects.get(pk=outcome.pk).raw.name)
    assert files._syncfs(path)  # Linux: one syncfs(2) per batch


@pytest.mark.parametrize("perms", [0o644, 0o600, 0o666])
def test_stored_files_get_the_upload_permissions_whatever_the_umask(settings, perms):
    """Files are created with FILE_UPLOAD_PERMISSIONS directly; the extra chmod only runs
    when the umask would strip some of those bits (here 0o022 strips 0o666's write bits)."""
    settings.FILE_UPLOAD_PERMISSIONS = perms
    name = files.save_bytes(f"raw/perm-test-{perms:o}.eml", b"x")
    try:
        assert os.stat(default_storage.path(name)).st_mode & 0o777 == perms
    finally:
        default_storage.delete(name)
    assert files._umask() == int(open("/proc/self/status").read().split("Umask:")[1].split()[0], 8)
