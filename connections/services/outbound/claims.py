"""Claiming the due messages of a connection for one SMTP session, and loading their MIME.

`claim` is one short transaction: `SELECT … FOR UPDATE SKIP LOCKED` of the due messages (within
the connection's rate limit), set to `sending` with `claimed_at` and the worker's lease.
`MimeLoader` fetches the claimed messages' MIME bytes in chunks from a thread of its own, one
chunk ahead of the sender.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

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
    """The MIME bytes of a claimed batch, in chunks (at most MIME_CHUNK_BYTES each: bounded
    memory with big attachments). The first chunk is small and the next ones grow.

    A thread with its own database connection loads the chunks one ahead — the first while
    the SMTP session is being opened, each next one while the previous is being sent — so the
    sender rarely waits for the database.
    """

    FIRST = 8   # messages in the first chunk
    GROWTH = 4  # each next chunk holds up to this many times more

    def __init__(self, batch: list[Claimed]) -> None:
        self.batch = batch
        self.chunks = self._plan()
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-mime", daemon=True)
        self._thread.start()

    def _plan(self) -> list[tuple[int, int]]:
        chunks, start, want = [], 0, self.FIRST
        while start < len(self.batch):
            end, total = start, 0
            while end < len(self.batch) and (end == start or (
                    end - start < want and total + self.batch[end].size <= MIME_CHUNK_BYTES)):
                total += self.batch[end].size
                end += 1
            chunks.append((start, end))
            start, want = end, want * self.GROWTH
        return chunks

    def _fetch(self, start: int, end: int) -> dict[int, bytes]:
        return persistence.load_mime(ids=[item.id for item in self.batch[start:end]])

    def _run(self) -> None:
        from django.db import connection as db_connection

        try:
            for start, end in self.chunks:
                try:
                    loaded: Any = (start, end, self._fetch(start, end))
                except BaseException as exc:  # handed to the sender, who raises it
                    loaded = exc
                if not self._hand_over(loaded) or self._stop.is_set() or isinstance(loaded, BaseException):
                    return
        finally:
            db_connection.close()  # this thread's own database connection

    def _hand_over(self, loaded: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(loaded, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fill(self, index: int) -> None:
        """Set .mime of the chunk that starts at batch[index] (the batch is sent in order)."""
        loaded = self._queue.get()
        if isinstance(loaded, BaseException):
            raise loaded
        start, end, found = loaded
        if start != index:  # pragma: no cover - a bug, not a condition of the data
            raise RuntimeError(f"outbox: MIME chunk starts at {start}, needed at {index}")
        for item in self.batch[start:end]:
            item.mime = found.get(item.id) or b""

    def __enter__(self) -> "MimeLoader":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join()
