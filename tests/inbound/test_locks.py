"""Mailbox locks: exclusive, expiring, taken over from a dead holder, released by token."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import MailboxLock
from connections.services.inbound import locks


@pytest.mark.django_db(transaction=True)
def test_lock_is_exclusive_expires_and_is_released():
    key = locks.mailbox_key(host="IMAP.Example.test", username="u@example.test", folder="INBOX")
    assert key == "imap.example.test|u@example.test|INBOX"
    first = locks.acquire(key=key, timeout_seconds=600)
    assert first
    assert locks.acquire(key=key, timeout_seconds=600) is None
    assert locks.extend(key=key, token=first, timeout_seconds=600)
    assert locks.acquire(key=key, timeout_seconds=600) is None
    # The holder "died" and its lock timeout passed: the lock is taken over.
    MailboxLock.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))
    second = locks.acquire(key=key, timeout_seconds=60)
    assert second and second != first
    assert not locks.extend(key=key, token=first, timeout_seconds=60)  # the old holder lost it
    assert not locks.release(key=key, token=first)
    assert locks.release(key=key, token=second)
    assert not MailboxLock.objects.exists()
    long = locks.mailbox_key(host="h", username="x" * 400, folder="INBOX")
    assert len(long) <= 255
