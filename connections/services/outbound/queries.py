"""Reading the outbox: a connection's messages per status (finding a connection by tenant and
name is access.lookup.find_connection)."""
from __future__ import annotations

from django.db.models import Count

from ...models import OutboxMessage


def counts_by_status(*, connection_id: int) -> dict[str, int]:
    """The connection's outbox messages per status (the admin's connection page)."""
    rows = (OutboxMessage.objects.filter(connection_id=connection_id)
            .values("status").annotate(n=Count("pk")).values_list("status", "n"))
    return dict(rows)

