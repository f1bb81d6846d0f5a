"""Files in storage that no stored message or attachment refers to, and their removal.

A poll writes a mail's files before the commit that records them (so that a row never
points at a missing file). A worker killed between the two leaves files behind that no
row refers to; a spool file of a big mail can be left behind the same way. They are
harmless but take disk space: `sweep_orphan_files()` (the `sweep_orphan_files` command,
and beat once a day) removes those older than a safety margin — far longer than any poll
runs, so that a poll's files awaiting their commit are never touched.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from stat import S_ISREG

from django.core.files.storage import FileSystemStorage, default_storage

from ...errors import TenantMailError
from ...models import Attachment, StoredMessage
from .fetched import spool_dir

DEFAULT_MIN_AGE = timedelta(hours=24)
# Folders under MEDIA_ROOT that hold mail files (see files.save_raw/save_attachment).
MAIL_FOLDERS = ("raw", "attachments")
_QUERY_CHUNK = 10_000


@dataclass
class SweepResult:
    checked: int = 0  # files old enough to be looked at
    orphans: int = 0
    removed: int = 0
    bytes: int = 0  # size of the orphans
    dry_run: bool = False
    names: list[str] = field(default_factory=list)  # the first orphans found (for the report)

    def to_dict(self) -> dict:
        return {"checked": self.checked, "orphans": self.orphans, "removed": self.removed, "bytes": self.bytes,
                "dry_run": self.dry_run, "names": self.names}


def sweep_orphan_files(*, min_age: timedelta = DEFAULT_MIN_AGE, dry_run: bool = False,
                       remote_ok: bool = False) -> SweepResult:
    """Remove mail files (and leftover spool files) older than `min_age` that no
    StoredMessage.raw or Attachment.file names. Local file storage only: with another
    storage backend it raises, or with `remote_ok` (beat's daily run) does nothing."""
    if not isinstance(default_storage, FileSystemStorage):
        if remote_ok:
            return SweepResult(dry_run=dry_run)
        raise TenantMailError(
            "Sweeping orphan files needs local file storage (MEDIA_ROOT).",
            hint="with a remote storage, use its own lifecycle rules for unreferenced objects",
        )
    if min_age < timedelta(hours=1):
        raise TenantMailError(
            f"A minimum age of {min_age} could remove the files of a poll that has not committed yet.",
            hint="use at least one hour (the default is 24 hours)",
        )
    result = SweepResult(dry_run=dry_run)
    cutoff = time.time() - min_age.total_seconds()
    root = default_storage.location
    known: set[str] | None = None  # every file name the database refers to, read once
    for folder in MAIL_FOLDERS:
        for directory, _, files in os.walk(os.path.join(root, folder)):
            old = _old_files(directory, files, root, cutoff)
            if not old:
                continue
            if known is None:
                known = _referenced_names()
            result.checked += len(old)
            _remove({name: size for name, size in old.items() if name not in known}, root, result)
    # Spool files are only ever in use during the poll that made them.
    spool = spool_dir()
    old = _old_files(spool, os.listdir(spool), root, cutoff)
    result.checked += len(old)
    _remove(old, root, result)
    return result


def _old_files(directory: str, filenames, root: str, cutoff: float) -> dict[str, int]:
    """{name relative to root: size} of the files in `directory` last written before `cutoff`."""
    old = {}
    for filename in filenames:
        path = os.path.join(directory, filename)
        try:
            stat = os.stat(path)
        except FileNotFoundError:  # removed meanwhile
            continue
        if S_ISREG(stat.st_mode) and stat.st_mtime < cutoff:
            old[os.path.relpath(path, root).replace(os.sep, "/")] = stat.st_size
    return old


def _referenced_names() -> set[str]:
    """The raw and attachment file names of every stored row, streamed (one pass over each
    table instead of a lookup per file: the name columns have no index of their own)."""
    names = set(StoredMessage.objects.values_list("raw", flat=True).iterator(chunk_size=_QUERY_CHUNK))
    names.update(Attachment.objects.values_list("file", flat=True).iterator(chunk_size=_QUERY_CHUNK))
    return names


def _remove(orphans: dict[str, int], root: str, result: SweepResult) -> None:
    for name, size in orphans.items():
        result.orphans += 1
        result.bytes += size
        if len(result.names) < 50:
            result.names.append(name)
        if result.dry_run:
            continue
        try:
            os.unlink(os.path.join(root, name))
            result.removed += 1
        except FileNotFoundError:
            pass
