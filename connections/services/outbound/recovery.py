"""Crash recovery of the outbox without an operator (issue 19).

Every message in `sending` carries how far it got (`progress`: claimed → session open → DATA
started; the final reply ends `sending`) and the lease of the worker that claimed it
(`lease_until`), renewed by that worker's heartbeat every OUTBOX_LEASE_SECONDS / 4. When a
worker dies (SIGKILL, machine lost) its heartbeat stops and, once the lease has run out,
`recover_expired` (beat's dispatcher runs it at every tick):

- puts back to `queued` every message whose DATA had not started (the server cannot have
  it: it only delivers after the final dot, which follows the recorded "DATA started");
- makes `uncertain` the one message per session caught between DATA and the final reply
  (it may have been delivered) — or, with the connection's `resend_uncertain`, queues it
  again at once (same bytes, same Message-ID: the receiver may get it twice).

The "DATA started" mark is committed before the message data goes out, together with the
outcomes of the session's earlier messages, so at most one message per session is ever
between the mark and its recorded outcome. OUTBOX_STALE_AFTER_MINUTES stays the outer
bound: a claim older than that is recovered even if a (hung) worker still renews it.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ...models import OutboxMessage, OutboxStatus, SendProgress
from . import policy
from .writer import log_entry

log = logging.getLogger(__name__)

__all__ = ["expired", "is_expired", "recover_expired", "Heartbeat", "mark_session", "RecoveryReport"]

UNCERTAIN_DETAIL = "the sending stopped after the data, before the server's reply: it may have been delivered"


def expired(now: datetime | None = None) -> Q:
    """`sending` messages whose worker is presumed gone: lease run out, or claimed too long ago."""
    now = now or timezone.now()
    return Q(status=OutboxStatus.SENDING) & (
        Q(lease_until__lt=now) | Q(claimed_at__lt=now - timedelta(minutes=policy.stale_minutes()))
    )


def is_expired(message: OutboxMessage, now: datetime | None = None) -> bool:
    """`expired()` for one loaded message (no query)."""
    now = now or timezone.now()
    return message.status == OutboxStatus.SENDING and bool(
        (message.lease_until and message.lease_until < now)
        or (message.claimed_at and message.claimed_at < now - timedelta(minutes=policy.stale_minutes())))


@dataclass
class RecoveryReport:
    requeued: int = 0
    uncertain: int = 0
    resent: int = 0

    def __bool__(self) -> bool:
        return bool(self.requeued or self.uncertain or self.resent)

    def __str__(self) -> str:
        return f"{self.requeued} requeued, {self.uncertain} uncertain, {self.resent} uncertain resent"


def _recovered(progress: str, entries: list, attempts: int, resend: bool, now: datetime) -> tuple[str, dict]:
    """What recovery makes of one expired message: (the report's counter, the row's new values)."""
    if progress != SendProgress.DATA:  # the server cannot have it: back in the queue
        return "requeued", dict(status=OutboxStatus.QUEUED, next_attempt_at=now, delivery_log=entries + [log_entry(
            "recovered", "the sending worker stopped before this message's data was sent: back in the queue")])
    if resend:
        return "resent", dict(
            status=OutboxStatus.QUEUED, next_attempt_at=now, attempts=attempts + 1, last_error=UNCERTAIN_DETAIL,
            delivery_log=entries + [log_entry("uncertain", UNCERTAIN_DETAIL + "; sent again (the connection resends "
                                                                              "uncertain messages)")])
    return "uncertain", dict(status=OutboxStatus.UNCERTAIN, next_attempt_at=None, attempts=attempts + 1,
                             last_error=UNCERTAIN_DETAIL,
                             delivery_log=entries + [log_entry("uncertain", UNCERTAIN_DETAIL)])


def recover_expired(*, now: datetime | None = None, connection_id: int | None = None) -> RecoveryReport:
    """Return the messages of dead workers to the queue (or to `uncertain`); one short transaction."""
    now = now or timezone.now()
    report = RecoveryReport()
    kick: set[int] = set()
    qs = OutboxMessage.objects.filter(expired(now))
    if connection_id is not None:
        qs = qs.filter(connection_id=connection_id)
    if not qs.exists():  # the usual case: one indexed query, no transaction
        return report
    with transaction.atomic():
        rows = list(
            qs.select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "connection_id", "progress", "delivery_log", "attempts", "connection__resend_uncertain")
        )
        for pk, cid, progress, log_entries, attempts, resend in rows:
            outcome, values = _recovered(progress, list(log_entries), attempts, resend, now)
            setattr(report, outcome, getattr(report, outcome) + 1)
            if outcome != "uncertain":
                kick.add(cid)
            OutboxMessage.objects.filter(pk=pk).update(claimed_at=None, lease_until=None, **values)
        for cid in kick:
            transaction.on_commit(lambda cid=cid: _kick(cid), robust=True)
    if report:
        log.warning("outbox: recovered the messages of a stopped worker: %s", report)
    return report


def _kick(connection_id: int) -> None:
    from .dispatch import kick

    kick(connection_id=connection_id)


def mark_session(*, connection_id: int, claimed_at: datetime) -> None:
    """Progress "session open" for a whole claim, one UPDATE (never over a later "DATA started")."""
    OutboxMessage.objects.filter(connection_id=connection_id, claimed_at=claimed_at, status=OutboxStatus.SENDING,
                                 progress=SendProgress.CLAIMED).update(progress=SendProgress.SESSION)


class Heartbeat:
    """Renews the lease of one claim (connection, claimed_at) from a thread with its own
    database connection, every lease / 4 seconds, until closed. Renewing touches only the
    claim's rows still in `sending`, and skips a row another transaction holds: the session
    writing that message's outcome locks its rows in its own order, and waiting for each other
    was a deadlock. A skipped row is renewed next time (its lease outlasts four renewals)."""

    def __init__(self, *, connection_id: int, claimed_at: datetime) -> None:
        self.connection_id = connection_id
        self.claimed_at = claimed_at
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from django.db import connection as db_connection

        interval = policy.lease_seconds() / 4
        try:
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except Exception as exc:  # the database is away: the lease may run out; recovery handles it
                    log.warning("outbox: could not renew the lease of connection %s: %s", self.connection_id, exc)
        finally:
            db_connection.close()

    def renew(self) -> int:
        """One renewal; returns the number of rows renewed."""
        claim = OutboxMessage.objects.filter(
            connection_id=self.connection_id, claimed_at=self.claimed_at, status=OutboxStatus.SENDING)
        if not transaction.get_connection().features.has_select_for_update_skip_locked:
            # SQLite: one writer at a time anyway; a transaction around the UPDATE would only
            # hold its table lock longer.
            return claim.update(lease_until=policy.lease_until())
        free = claim.select_for_update(skip_locked=True).values("pk")
        with transaction.atomic():
            return OutboxMessage.objects.filter(pk__in=free).update(lease_until=policy.lease_until())

    def __enter__(self) -> "Heartbeat":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
