"""Mailbox locks: at most one poll per mailbox (host + user + folder) across all workers.

A lock is a MailboxLock row with a unique key, taken in a short transaction of its own.
It expires after the connection's lock timeout, so a worker that was killed mid-poll
blocks the mailbox only until then; the holder extends it while it works and deletes it
(by token) at the end.
"""
from __future__ import annotations

import hashlib
import os
import socket
import uuid
from datetime import timedelta

from django.utils import timezone

from ...models import MailboxLock
from ..persistence import inbound as inbound_rows

_HOLDER = f"{socket.gethostname()}:{os.getpid()}"


def mailbox_key(*, host: str, username: str, folder: str) -> str:
    """The lock key of a mailbox. Different ports or protocols reach the same mailbox."""
    key = f"{host.strip().lower()}|{username}|{folder or 'INBOX'}"
    if len(key) > 255:
        key = "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    return key


def acquire(*, key: str, timeout_seconds: int) -> str | None:
    """Take the lock; returns its token, or None when someone else holds a live lock."""
    token, _ = acquire_or_take_over(key=key, timeout_seconds=timeout_seconds)
    return token


def acquire_or_take_over(*, key: str, timeout_seconds: int) -> tuple[str | None, bool]:
    """Like acquire(); the flag says the lock was taken over from a holder that died."""
    return inbound_rows.take_lock(lock=new_lock(key=key, timeout_seconds=timeout_seconds))


def new_lock(*, key: str, timeout_seconds: int) -> MailboxLock:
    """The (unsaved) lock row this process takes: a fresh token, expiring after the timeout."""
    now = timezone.now()
    return MailboxLock(key=key, token=uuid.uuid4().hex, acquired_at=now,
                       expires_at=now + timedelta(seconds=max(1, timeout_seconds)), holder=_HOLDER[:255])


def extend(*, key: str, token: str, timeout_seconds: int) -> bool:
    """Push the expiry out while the poll is still working. False: the lock was lost."""
    expires = timezone.now() + timedelta(seconds=max(1, timeout_seconds))
    return bool(MailboxLock.objects.filter(key=key, token=token).update(expires_at=expires))


def release(*, key: str, token: str) -> bool:
    deleted, _ = MailboxLock.objects.filter(key=key, token=token).delete()
    return bool(deleted)


def holder(*, key: str) -> MailboxLock | None:
    return MailboxLock.objects.filter(key=key).first()
