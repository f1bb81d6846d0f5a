"""Small helpers shared by the outbound tests."""
from __future__ import annotations

from connections.models import OutboxMessage
from connections.services.outbound import enqueue


def queue_one(conn, to: str = "a@example.test", **kw) -> OutboxMessage:
    """One plain message to `to`, stored without kicking a worker."""
    return enqueue.enqueue(connection_id=conn.pk, to=[to], subject="s", text="t", dispatch=False, **kw)


def status_of(msg) -> str:
    """The message's status as stored now."""
    return OutboxMessage.objects.values_list("status", flat=True).get(pk=msg.pk)
