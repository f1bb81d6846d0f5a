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


def test_file_names_are_random_and_never_shared_by_threads_or_forked_helpers():
    """Names come from a pooled urandom buffer (not one system call per file): every thread
    has its own pool, and a forked helper process (prepare_pool) refills its own."""
    import threading

    names = [files.unique_hex() for _ in range(600)]  # more than one pool's worth
    assert all(len(n) == 32 and int(n, 16) >= 0 for n in names)
    other: list[str] = []
    thread = threading.Thread(target=lambda: other.extend(files.unique_hex() for _ in range(300)))
    thread.start()
    thread.join()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a prepare helper would name its next files
        os.write(write_fd, "".join(files.unique_hex() for _ in range(10)).encode())
        os._exit(0)
    os.close(write_fd)
    child = os.read(read_fd, 320).decode()
    os.close(read_fd)
    os.waitpid(pid, 0)
    forked = [child[i:i + 32] for i in range(0, len(child), 32)]
    parent_next = [files.unique_hex() for _ in range(10)]
    assert len(forked) == 10
    everything = names + other + forked + parent_next
    assert len(set(everything)) == len(everything)


def test_a_removed_day_folder_is_created_again(settings, tmp_path):
    """The day folder's path is remembered once made; removed meanwhile, it is made again."""
    import shutil

    settings.MEDIA_ROOT = str(tmp_path / "media")
    first = files.save_bytes(files.dated("raw") + "a.eml", b"one")
    shutil.rmtree(tmp_path / "media")
    second = files.save_bytes(files.dated("raw") + "b.eml", b"two")
    assert open(default_storage.path(second), "rb").read() == b"two"
    assert os.path.dirname(default_storage.path(first)) == os.path.dirname(default_storage.path(second))
