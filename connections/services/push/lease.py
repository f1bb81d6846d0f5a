"""Push leases: which run_idle process holds the IDLE session of which connection.

One PushLease row per push connection. A process claims rows whose lease is free or expired
with one conditional UPDATE (of two processes racing for a row, one wins), renews its own
rows while their sessions live, and releases them when it stops. A killed process stops
renewing: after the lease's time to live another process takes its connections over.
Every function here is one short statement or transaction; none spans network I/O.
"""
from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from ...models import InboundConnection, Protocol, PushLease, PushState


def new_holder() -> str:
    """This process's holder name: host:pid:random (a restarted pid is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:255]


def push_connection_ids() -> list[int]:
    """Enabled IMAP connections with push on (all tenants: run_idle serves the installation)."""
    return list(
        InboundConnection.objects.filter(enabled=True, push=True, protocol=Protocol.IMAP)
        .order_by("pk").values_list("pk", flat=True)
    )


def claim(*, holder: str, limit: int, ttl_seconds: int) -> set[int]:
    """Claim up to `limit` push connections whose lease is free or expired; return every
    connection this holder holds now."""
    ids = push_connection_ids()
    if ids:
        have = set(PushLease.objects.filter(connection_id__in=ids).values_list("connection_id", flat=True))
        PushLease.objects.bulk_create(
            [PushLease(connection_id=i) for i in ids if i not in have], ignore_conflicts=True
        )
    now = timezone.now()
    if limit > 0 and ids:
        free = list(
            PushLease.objects.filter(connection_id__in=ids)
            .filter(Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now))
            .order_by("connection_id").values_list("pk", flat=True)[:limit]
        )
        if free:
            # The condition is evaluated again under the row lock: of two claimers, one wins.
            PushLease.objects.filter(pk__in=free).filter(
                Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now)
            ).update(holder=holder, expires_at=now + timedelta(seconds=ttl_seconds), state=PushState.CONNECTING,
                     connected_since=None, updated_at=now)
    return held(holder=holder)


def held(*, holder: str) -> set[int]:
    return set(PushLease.objects.filter(holder=holder).values_list("connection_id", flat=True))


def renew(*, holder: str, ttl_seconds: int) -> set[int]:
    """Extend this holder's leases; returns the connections it still holds."""
    now = timezone.now()
    PushLease.objects.filter(holder=holder).update(expires_at=now + timedelta(seconds=ttl_seconds))
    return held(holder=holder)


def release(*, holder: str, connection_ids: list[int] | None = None) -> int:
    """Give leases back (at shutdown, or for connections no longer on push)."""
    qs = PushLease.objects.filter(holder=holder)
    if connection_ids is not None:
        qs = qs.filter(connection_id__in=connection_ids)
    return qs.update(holder="", expires_at=None, state=PushState.WAITING, connected_since=None,
                     updated_at=timezone.now())


def record(*, holder: str, connection_id: int, state: str | None = None, event: str | None = None,
           error: str | None = None) -> None:
    """Write the push state of a connection this holder holds (a lost lease writes nothing)."""
    now = timezone.now()
    values: dict = {"updated_at": now}
    if state is not None:
        values["state"] = state
        if state == PushState.IDLE:
            values["connected_since"] = now
            values["last_error"] = ""
        elif state != PushState.IDLE:
            values["connected_since"] = None
    if event is not None:
        values["last_event"] = event[:64]
        values["last_event_at"] = now
    if error is not None:
        values["last_error"] = error
    PushLease.objects.filter(holder=holder, connection_id=connection_id).update(**values)
