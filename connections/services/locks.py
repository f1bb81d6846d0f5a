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

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import MailboxLock

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
    db = transaction.get_connection()
    if db.vendor == "postgresql":
        # One statement (one round trip): insert, or take over an expired lock atomically.
        sql, params, token = acquire_sql(key=key, timeout_seconds=timeout_seconds)
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return (token, not row[0]) if row else (None, False)
    token = uuid.uuid4().hex
    now = timezone.now()
    expires = now + timedelta(seconds=max(1, timeout_seconds))
    try:
        with transaction.atomic():
            MailboxLock.objects.create(key=key, token=token, acquired_at=now, expires_at=expires, holder=_HOLDER[:255])
        return token, False
    except IntegrityError:
        pass
    # Held: take it over only if it has expired (its holder died or hung). The condition in
    # the UPDATE makes the take-over atomic: of two pollers, one wins.
    with transaction.atomic():
        taken = MailboxLock.objects.filter(key=key, expires_at__lte=now).update(
            token=token, acquired_at=now, expires_at=expires, holder=_HOLDER[:255]
        )
    return (token, True) if taken else (None, False)


def acquire_sql(*, key: str, timeout_seconds: int) -> tuple[str, list, str]:
    """PostgreSQL: (sql, params, token) of the one statement that takes the lock or takes an
    expired one over, for use inside a bigger statement (a CTE). It returns one row
    `fresh` (true: new lock, false: taken over) when the lock is ours, no row when it is held."""
    token = uuid.uuid4().hex
    now = timezone.now()
    expires = now + timedelta(seconds=max(1, timeout_seconds))
    table = transaction.get_connection().ops.quote_name(MailboxLock._meta.db_table)
    sql = (
        f"INSERT INTO {table} (key, token, acquired_at, expires_at, holder) VALUES (%s, %s, %s, %s, %s) "
        f"ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, acquired_at = EXCLUDED.acquired_at, "
        f"expires_at = EXCLUDED.expires_at, holder = EXCLUDED.holder WHERE {table}.expires_at <= %s "
        f"RETURNING (xmax = 0) AS fresh"
    )
    return sql, [key, token, now, expires, _HOLDER[:255], now], token


def release_sql(*, key: str, token: str) -> tuple[str, list]:
    """PostgreSQL: the DELETE of release() as SQL, for use inside a bigger statement."""
    table = transaction.get_connection().ops.quote_name(MailboxLock._meta.db_table)
    return f"DELETE FROM {table} WHERE key = %s AND token = %s", [key, token]


def extend(*, key: str, token: str, timeout_seconds: int) -> bool:
    """Push the expiry out while the poll is still working. False: the lock was lost."""
    expires = timezone.now() + timedelta(seconds=max(1, timeout_seconds))
    return bool(MailboxLock.objects.filter(key=key, token=token).update(expires_at=expires))


def release(*, key: str, token: str) -> bool:
    deleted, _ = MailboxLock.objects.filter(key=key, token=token).delete()
    return bool(deleted)


def holder(*, key: str) -> MailboxLock | None:
    return MailboxLock.objects.filter(key=key).first()
