"""Where an outbox outcome is written: `record_outcome` (one message) and `record_outcomes`
(several, in order, as one statement or one short transaction), both through
services/persistence/outbound.py; and `Writer`, with which a sending session hands them over.

Every write is conditional — it lands only while the row is still ours (`sending`, the same
`claimed_at`): an operator or crash recovery may have taken the message meanwhile. A session's
writes are buffered by its own thread and group-committed: before each message's data goes
out, `Writer.mark_data` commits "DATA started" together with every outcome handed over before
it, asynchronously on PostgreSQL (crash recovery relies on it: recovery.py).
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from ...errors import TenantMailError
from ...models import OutboxMessage, OutboxStatus, SendProgress
from ..persistence import outbound as persistence
from ..persistence.commits import asynchronous_commit

if TYPE_CHECKING:  # pragma: no cover
    from .claims import Claimed

log = logging.getLogger("connections.services.outbound")

Job = tuple["Claimed", dict[str, Any]]  # a message and the values of its outcome (maybe with "followup")


def log_entry(outcome: str, detail: str = "", code: int | None = None, **extra: Any) -> dict:
    """One line of a message's delivery log."""
    entry = {"at": timezone.now().isoformat(timespec="seconds"), "outcome": outcome, "code": code, "detail": detail}
    entry.update(extra)
    return entry


def record_outcome(item: Claimed, *, followup: dict | None = None, **values: Any) -> bool:
    """Record one outcome, only if the message is still ours (an operator may have requeued it).

    One UPDATE: its own short transaction (or part of the caller's, if it has one); with a
    `followup` (recipients refused temporarily), the follow-up message in the same one.
    """
    if followup is None:
        done = _write(item, values)
    else:
        with transaction.atomic():
            done = _write(item, values)
            if done:
                create_followup(item, **followup)
    if not done:
        log.warning("outbox: message %s changed while it was being sent; outcome %s not recorded",
                    item.id, values.get("status"))
    return done


def record_outcomes(jobs: list[Job]) -> set[int]:
    """Group commit: the outcomes of several messages, in order, in ONE statement (the usual
    group: distinct messages, no follow-up) or else ONE short transaction; the ids written."""
    if len({item.id for item, _ in jobs}) == len(jobs) and all(values.get("followup") is None for _, values in jobs):
        # A sent outcome carries followup=None: not a column, and no follow-up to create.
        rows = [(item.id, item.claimed_at, {k: v for k, v in values.items() if k != "followup"})
                for item, values in jobs]
        done = persistence.write_outcomes(rows=rows)
    else:
        done = _record_in_one_transaction(jobs)
    for item, values in jobs:
        if item.id not in done:
            log.warning("outbox: message %s changed while it was being sent; outcome %s not recorded",
                        item.id, values.get("status") or values.get("progress"))
    return done


def _record_in_one_transaction(jobs: list[Job]) -> set[int]:
    """Runs of distinct messages as one statement each; a message with a follow-up on its own."""
    done: set[int] = set()
    run: dict[int, tuple[Claimed, dict[str, Any]]] = {}

    def flush() -> None:
        done.update(persistence.write_outcomes(rows=[(i.id, i.claimed_at, v) for i, v in run.values()]))
        run.clear()

    with transaction.atomic():
        asynchronous_commit()
        for item, values in jobs:
            values = dict(values)
            followup = values.pop("followup", None)
            if item.id in run:  # keep each message's writes in order
                flush()
            if followup is None:
                run[item.id] = (item, values)
            elif _write(item, values):
                done.add(item.id)
                create_followup(item, **followup)
        flush()
    return done


def _write(item: Claimed, values: dict[str, Any]) -> bool:
    return persistence.write_outcome(message_id=item.id, claimed_at=item.claimed_at, values=values)


def create_followup(item: Claimed, *, recipients: list[str], delay: float, reason: str) -> OutboxMessage:
    """A copy of the message for the recipients the server refused temporarily, due after `delay`."""
    original = OutboxMessage.objects.get(pk=item.id)
    copy = OutboxMessage(
        tenant_id=original.tenant_id, connection_id=original.connection_id, retry_of=original,
        from_address=original.from_address, to=original.to, cc=original.cc, bcc=original.bcc,
        reply_to=original.reply_to, subject=original.subject, text_body=original.text_body,
        html_body=original.html_body, extra_headers=original.extra_headers, priority=original.priority,
        send_after=original.send_after, message_id=original.message_id, envelope_from=original.envelope_from,
        envelope_to=recipients, mime=original.mime, size=original.size,
        status=OutboxStatus.QUEUED, attempts=item.attempts + 1,
        next_attempt_at=timezone.now() + timedelta(seconds=delay), last_error=reason,
        delivery_log=[log_entry("deferred", f"refused temporarily in message #{original.pk}: {reason}",
                                retry_in=int(delay))],
    )
    copy.save()
    return copy


class NotOurs(TenantMailError):
    """The message left `sending` (an operator, or recovery) before its data went out."""


class Writer:
    """Records a session's outcomes in the order given, in groups, committed by the sending
    thread itself.

    Outcomes wait in memory and go out together with the next message's "DATA started" —
    `mark_data` commits it with every outcome handed over before it, in ONE statement (one
    round trip) on PostgreSQL, before that message's data goes out. So when a worker dies, at
    most its last message lacks an outcome (it becomes `uncertain`, see recovery.py); all
    others are recorded or provably untried. `flush` writes what is left (the sender calls it
    when a session's last message has its reply, before QUIT). No transaction is ever open
    across network I/O: each group is committed before the data goes out.

    On PostgreSQL these commits are asynchronous (persistence/outbound.py): visible to every
    other session at once, so a killed worker loses nothing; only a crash of the PostgreSQL
    server itself can lose the last fraction of a second of them (docs/outbound.md, crash
    recovery). Claims stay synchronous.
    """

    GROUP_MAX = 64  # outcomes buffered without a barrier (failures before the data) are written at this many

    def __init__(self) -> None:
        self._pending: list[Job] = []

    def __call__(self, item: Claimed, **values: Any) -> None:
        self._pending.append((item, values))
        if len(self._pending) >= self.GROUP_MAX:
            self.flush()

    def mark_data(self, item: Claimed) -> None:
        """Commit "DATA started" for `item` — with every outcome handed over before it — and
        return once committed: called right before the message data goes out (crash recovery
        relies on it, see recovery.py). Raises NotOurs when the message is no longer ours."""
        if item.id not in self._commit([(item, {"progress": SendProgress.DATA})]):
            raise NotOurs(f"message #{item.id} was changed by an operator while being sent; not sent")

    def flush(self) -> None:
        """Write every outcome handed over so far (one statement or short transaction)."""
        if self._pending:
            self._commit([])

    def _commit(self, extra: list[Job]) -> set[int]:
        jobs, self._pending = self._pending + extra, []
        return record_outcomes(jobs)

    def close(self) -> None:
        """Write what is left; raises the write's error, if any."""
        self.flush()
