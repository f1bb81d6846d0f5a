"""Claiming the due messages of a connection for one SMTP session, and loading their MIME.

`claim` is one short transaction: `SELECT … FOR UPDATE SKIP LOCKED` of the due messages (within
the connection's rate limit), set to `sending` with `claimed_at` and the worker's lease.
`MimeLoader` fetches the claimed messages' MIME bytes in chunks, on the sending thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from django.db import transaction
from django.utils import timezone

from ...models import OutboundConnection, OutboxMessage, OutboxStatus, SendProgress
from ..persistence import outbound as persistence
from . import policy

# Bytes of MIME fetched per query while sending: bounds memory with big attachments.
MIME_CHUNK_BYTES = 16 * 1024 * 1024


@dataclass
class Claimed:
    """A message claimed for sending: what the sender and the outcome writer need of it."""

    id: int
    envelope_from: str
    envelope_to: list[str]
    attempts: int
    delivery_log: list
    size: int
    previous_results: dict
    claimed_at: datetime
    mime: bytes | None = None
    resend_uncertain: bool = False


def claim(connection: OutboundConnection, limit: int, only_ids: Sequence[int] | None) -> list[Claimed]:
    """Short transaction: lock due messages (skipping those another worker holds), mark them sending."""
    now = timezone.now()
    with transaction.atomic():
        if connection.rate_limit_per_minute:
            # Serialise claims of this connection so that two workers cannot both spend the budget.
            OutboundConnection.objects.select_for_update().filter(pk=connection.pk).values_list("pk").first()
            used = OutboxMessage.objects.filter(
                connection_id=connection.pk, claimed_at__gt=now - timedelta(minutes=1)
            ).count()
            limit = min(limit, connection.rate_limit_per_minute - used)
            if limit <= 0:
                return []
        qs = OutboxMessage.objects.filter(
            connection_id=connection.pk, status=OutboxStatus.QUEUED, next_attempt_at__lte=now
        )
        if only_ids is not None:
            qs = qs.filter(pk__in=list(only_ids))
        rows = list(
            qs.select_for_update(skip_locked=True, of=("self",))
            .order_by("-priority", "next_attempt_at", "pk")
            .values_list("pk", "envelope_from", "envelope_to", "attempts", "delivery_log", "size",
                         "recipient_results")[:limit]
        )
        if not rows:
            return []
        OutboxMessage.objects.filter(pk__in=[r[0] for r in rows]).update(
            status=OutboxStatus.SENDING, claimed_at=now, lease_until=policy.lease_until(now),
            progress=SendProgress.CLAIMED,
        )
    return [Claimed(*row, claimed_at=now, resend_uncertain=connection.resend_uncertain) for row in rows]


class MimeLoader:
    """The MIME bytes of a claimed batch, loaded by the sending thread itself in chunks of at
    most MIME_CHUNK_BYTES (bounded memory with big attachments): the first chunk before the
    SMTP session opens, each next one when the sender reaches it. A loading thread of its own
    cost more than it saved: a database connection opened for every session (more than a
    batch's MIME takes to load), and a hand-over between threads.
    """

    def __init__(self, batch: list[Claimed]) -> None:
        self.batch = batch
        self.chunks = dict(self._plan())  # start -> end of each chunk not loaded yet
        if self.chunks:
            self.fill(0)

    def _plan(self) -> list[tuple[int, int]]:
        chunks, start = [], 0
        while start < len(self.batch):
            end, total = start, 0
            while end < len(self.batch) and (end == start or total + self.batch[end].size <= MIME_CHUNK_BYTES):
                total += self.batch[end].size
                end += 1
            chunks.append((start, end))
            start = end
        return chunks

    def fill(self, index: int) -> None:
        """Set .mime of the chunk that starts at batch[index] (the batch is sent in order)."""
        end = self.chunks.pop(index, None)
        if end is None:  # pragma: no cover - a bug, not a condition of the data
            raise RuntimeError(f"outbox: no MIME chunk starts at {index}")
        found = persistence.load_mime(ids=[item.id for item in self.batch[index:end]])
        for item in self.batch[index:end]:
            item.mime = found.get(item.id) or b""

