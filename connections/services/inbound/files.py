"""Mail files in storage: the raw mail and its attachments, written under dated folders,
flushed to disk when the policy asks for it (INBOUND_FSYNC), removed when never recorded.

Files are written before the rows that name them commit (a row never points at a missing
file); `orphans.py` sweeps what a killed worker leaves behind.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Iterable

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.utils.text import get_valid_filename

from connections.conf import conf
from ...models import InboundConnection, PostProcessing

if TYPE_CHECKING:
    from ..parsing.results import ParsedAttachment
    from .fetched import FetchedMail

log = logging.getLogger(__name__)


class _SpooledFile(File):
    """A finished temp file: FileSystemStorage moves it into place instead of copying."""

    def __init__(self, path: str) -> None:
        super().__init__(open(path, "rb"), name=os.path.basename(path))
        self._path = path

    def temporary_file_path(self) -> str:
        return self._path


_DAY: tuple[str, str] = ("", "")


def dated(prefix: str) -> str:
    """The day folder (UTC) of a new file, e.g. raw/2026/11/21/ — worked out once a second,
    not per file."""
    global _DAY
    second = str(int(time.time()))
    if _DAY[0] != second:
        _DAY = (second, time.strftime("%Y/%m/%d", time.gmtime(int(second))))
    return f"{prefix}/{_DAY[1]}/"


_RANDOM = threading.local()


def unique_hex() -> str:
    """32 random hex digits (as uuid4().hex, 128 bits of os.urandom) for a new file's name,
    cut from a pool fetched 256 names at a time: one getrandom(2) per file was a
    system call and a GIL hand-off per stored mail. Per thread, and refilled in a forked
    child (the prepare helpers), so no two writers ever share bytes."""
    pool = getattr(_RANDOM, "pool", None)
    if pool is None or _RANDOM.next >= len(pool):
        _RANDOM.pool, _RANDOM.next = os.urandom(16 * 256).hex(), 0
    start = _RANDOM.next
    _RANDOM.next = start + 32
    return _RANDOM.pool[start:start + 32]


def _forget_pool() -> None:
    _RANDOM.__dict__.clear()  # the forking thread, the child's only one


os.register_at_fork(after_in_child=_forget_pool)  # (not os.getpid() per name: a system call too)


# (storage location, relative folder) -> absolute folder, created: resolved once per day
# folder instead of Django's path()/safe_join() per file.
_made_dirs: dict[tuple[str, str], str] = {}


def save_bytes(name: str, data: bytes) -> str:
    """Save a new file. For local storage, one exclusive create + write: the names are
    unique (random, 128 bits) already, so Django's name-availability dance is not needed."""
    if not isinstance(default_storage, FileSystemStorage):
        return default_storage.save(name, ContentFile(data))
    folder, _, base = name.rpartition("/")
    key = (default_storage.location, folder)
    directory = _made_dirs.get(key)
    if directory is None:
        directory = os.path.dirname(default_storage.path(name))  # checks the name stays inside
        os.makedirs(directory, exist_ok=True)
        _made_dirs[key] = directory
    path = os.path.join(directory, base)
    perms = settings.FILE_UPLOAD_PERMISSIONS
    flags, mode = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666 if perms is None else perms
    try:
        fd = os.open(path, flags, mode)
    except FileNotFoundError:  # the folder was removed since (e.g. a cleaned-up storage)
        os.makedirs(directory, exist_ok=True)
        fd = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)
    # The chmod is one more system call per file: needed only when the umask strips bits.
    if perms is not None and perms & _umask():
        os.chmod(path, perms)
    return name


_UMASK: int | None = None


def _umask() -> int:
    """The process umask, read without changing it (os.umask() would, racing other threads);
    all bits (always chmod) when it cannot be read."""
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status") as fh:
                line = next(l for l in fh if l.startswith("Umask:"))
            _UMASK = int(line.split()[1], 8)
        except (OSError, StopIteration, ValueError):
            _UMASK = 0o777
    return _UMASK


def save_raw(mail: FetchedMail) -> str:
    name = dated("raw") + f"{unique_hex()}.eml"
    if mail.data is not None:
        return save_bytes(name, mail.data)
    mail._moved_size = os.path.getsize(mail.path)  # type: ignore[arg-type]
    content = _SpooledFile(mail.path)  # type: ignore[arg-type]
    try:
        saved = default_storage.save(name, content)
    finally:
        content.close()
    if not os.path.exists(mail.path):  # moved into place
        mail.path = None
    return saved


def save_attachment(att: ParsedAttachment) -> str:
    base = ""
    if att.filename:
        try:
            base = get_valid_filename(att.filename)
        except Exception:  # e.g. a name of dots only
            base = ""
        # File systems limit a name to 255 bytes: keep the readable part short (UTF-8).
        base = base.encode("utf-8")[:100].decode("utf-8", "ignore")
    name = dated("attachments") + unique_hex() + (f"-{base}" if base else "")
    if att.payload is not None:
        return save_bytes(name, att.payload)
    content = _SpooledFile(att.path)  # type: ignore[arg-type]
    try:
        saved = default_storage.save(name, content)
    finally:
        content.close()
    if not os.path.exists(att.path):
        att.path = None
    return saved


def discard_unstored(mails: list[FetchedMail]) -> None:
    """Remove the files written ahead for mails that were never stored (the poll stopped)."""
    for mail in mails:
        delete_files([mail.raw_name, *mail.attachment_names])
        mail.raw_name, mail.attachment_names = "", []
        mail.cleanup()


def must_sync(connection: InboundConnection) -> bool:
    """Flush the files to disk before the rows commit? Needed when the server copy is
    deleted right after the commit: a power cut must not leave a row without its mail.
    INBOUND_FSYNC: "destructive" (default: only for Delete), "always" or "never"."""
    mode = str(conf.INBOUND_FSYNC).lower()
    if mode == "always":
        return True
    if mode == "never":
        return False
    return connection.post_processing == PostProcessing.DELETE


def sync_files(names: list[str]) -> None:
    if not isinstance(default_storage, FileSystemStorage):
        return  # remote storages acknowledge durable writes themselves
    paths = [default_storage.path(n) for n in names if n]
    if not paths:
        return
    if _syncfs(paths[0]):
        return
    for path in paths:  # no syncfs(2): one fsync per file
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for directory in {os.path.dirname(p) for p in paths}:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _syncfs(path: str) -> bool:
    """Linux syncfs(2): one call flushes the whole file system (cheaper than N fsyncs)."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            return libc.syncfs(fd) == 0
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return False


def delete_files(names: Iterable[str]) -> None:
    for name in names:
        if name:
            try:
                default_storage.delete(name)
            except Exception:  # a leftover file is harmless; a crash here is not
                log.warning("could not remove orphan file %s", name)
