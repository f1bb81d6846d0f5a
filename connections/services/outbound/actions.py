"""An operator's actions on outbox messages (the admin's actions; each checks the user's
tenants when a user is given): requeue and cancel, and the two choices for an uncertain
message — send it again, or mark it sent."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ...models import OutboxMessage, OutboxStatus, SendProgress
from . import dispatch, recovery
from .writer import log_entry


@dataclass
class ActionResult:
    changed: int
    skipped: int

    def __str__(self) -> str:
        return f"{self.changed} changed, {self.skipped} skipped"


def _scoped(message_ids: Iterable[int], user) -> Any:
    qs = OutboxMessage.objects.filter(pk__in=list(message_ids))
    if user is not None:
        from ..access import tenancy

        qs = tenancy.scope(qs, user, action="run")
    return qs


def _who(user) -> str:
    name = getattr(user, "get_username", lambda: "")() if user is not None else ""
    return f" by {name}" if name else ""


def _kick_on_commit(connection_ids: Iterable[int]) -> None:
    for cid in connection_ids:
        transaction.on_commit(lambda cid=cid: dispatch.kick(connection_id=cid), robust=True)


def requeue(*, message_ids: Iterable[int], user=None) -> ActionResult:
    """Failed, cancelled and stale `sending` messages back to queued, due now, attempts reset.

    (Beat's recovery handles stale `sending` messages by itself; this is the operator's
    shortcut. Uncertain messages have their own actions below.)
    """
    now = timezone.now()
    ids = list(message_ids)
    changed, connections = 0, set()
    with transaction.atomic():
        eligible = (
            _scoped(ids, user)
            .filter(Q(status__in=[OutboxStatus.FAILED, OutboxStatus.CANCELLED]) | recovery.expired(now))
            .select_for_update(skip_locked=True)
            .only("pk", "status", "delivery_log", "connection_id")
        )
        for message in eligible:
            detail = f"requeued from {message.status}" + _who(user)
            OutboxMessage.objects.filter(pk=message.pk).update(
                status=OutboxStatus.QUEUED, attempts=0, next_attempt_at=now, claimed_at=None, lease_until=None,
                delivery_log=list(message.delivery_log) + [log_entry("requeued", detail)],
            )
            changed += 1
            connections.add(message.connection_id)
        _kick_on_commit(connections)
    return ActionResult(changed, len(ids) - changed)


def cancel(*, message_ids: Iterable[int], user=None) -> ActionResult:
    """Queued (and stale `sending`) messages to cancelled: they will not be sent (again)."""
    now = timezone.now()
    ids = list(message_ids)
    changed = 0
    with transaction.atomic():
        eligible = (
            _scoped(ids, user)
            .filter(Q(status__in=[OutboxStatus.QUEUED, OutboxStatus.UNCERTAIN]) | recovery.expired(now))
            .select_for_update(skip_locked=True)
            .only("pk", "status", "delivery_log")
        )
        for message in eligible:
            detail = f"cancelled from {message.status}" + _who(user)
            OutboxMessage.objects.filter(pk=message.pk).update(
                status=OutboxStatus.CANCELLED, next_attempt_at=None,
                delivery_log=list(message.delivery_log) + [log_entry("cancelled", detail)],
            )
            changed += 1
    return ActionResult(changed, len(ids) - changed)


def resend_uncertain(*, message_ids: Iterable[int], user=None) -> int:
    """Uncertain → queued, due now: sent again with the same bytes and Message-ID."""
    now = timezone.now()
    changed, connections = 0, set()
    with transaction.atomic():
        for pk, cid, entries in (_scoped(message_ids, user).filter(status=OutboxStatus.UNCERTAIN)
                                 .select_for_update(skip_locked=True).values_list("pk", "connection_id",
                                                                                   "delivery_log")):
            OutboxMessage.objects.filter(pk=pk).update(
                status=OutboxStatus.QUEUED, next_attempt_at=now, claimed_at=None, lease_until=None,
                delivery_log=list(entries) + [log_entry("resend", "uncertain message sent again (same Message-ID)"
                                                        + _who(user))])
            changed += 1
            connections.add(cid)
        _kick_on_commit(connections)
    return changed


def mark_sent(*, message_ids: Iterable[int], user=None) -> int:
    """Uncertain → sent (the operator knows it arrived, e.g. the receiver confirmed it)."""
    now = timezone.now()
    changed = 0
    with transaction.atomic():
        for pk, entries in (_scoped(message_ids, user).filter(status=OutboxStatus.UNCERTAIN)
                            .select_for_update(skip_locked=True).values_list("pk", "delivery_log")):
            OutboxMessage.objects.filter(pk=pk).update(
                status=OutboxStatus.SENT, sent_at=now, next_attempt_at=None, progress=SendProgress.REPLIED,
                delivery_log=list(entries) + [log_entry("marked sent", "uncertain message marked sent" + _who(user))])
            changed += 1
    return changed

