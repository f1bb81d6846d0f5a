"""Asynchronous commit: a transaction whose loss in a database crash is harmless commits
without waiting for its WAL flush (PostgreSQL's `synchronous_commit = off` for it alone).

Used for bookkeeping that a crash may lose: a poll's history row, lock and outcome; the
outbox's "DATA started" marks and outcomes (crash recovery covers them); beat's claims of due
polls (a lost claim re-dispatches: a second poll of a mailbox is harmless); heartbeats. Never
for stored mail. A later synchronous commit flushes everything before it anyway.
"""
from __future__ import annotations

from django.db import transaction

# In one statement (SELECT … or a CTE); set_config(…, true) lasts until the transaction ends.
ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"


def asynchronous_commit() -> None:
    """The current transaction commits without waiting for the WAL flush (PostgreSQL).
    Elsewhere nothing. Call it inside `transaction.atomic()`; inside a caller's transaction
    (a nested block) nothing either: the setting would cover the caller's commit too."""
    db = transaction.get_connection()
    if db.vendor == "postgresql" and len(db.atomic_blocks) == 1:
        with db.cursor() as cursor:
            cursor.execute(f"SELECT {ASYNC_COMMIT}")
