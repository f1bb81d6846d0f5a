"""Reading the outbox: an outbound connection by tenant and name, a connection's messages per
status."""
from __future__ import annotations

from django.db.models import Count

from ...errors import NotFound, no_tenant
from ...models import OutboundConnection, OutboxMessage, Tenant


def resolve_connection(*, tenant: str | int | Tenant, connection: str | int) -> OutboundConnection:
    """An outbound connection by tenant (slug, id or object) and name (or id)."""
    qs = OutboundConnection.objects.select_related("tenant")
    if isinstance(tenant, Tenant):
        qs = qs.filter(tenant=tenant)
    elif isinstance(tenant, int):
        qs = qs.filter(tenant_id=tenant)
    else:
        if not Tenant.objects.filter(slug=tenant).exists():
            raise NotFound(no_tenant(tenant), hint="see the tenants in the admin")
        qs = qs.filter(tenant__slug=tenant)
    lookup = {"pk": connection} if isinstance(connection, int) else {"name": connection}
    try:
        return qs.get(**lookup)
    except OutboundConnection.DoesNotExist:
        names = ", ".join(qs.values_list("name", flat=True)[:20]) or "none"
        raise NotFound(
            f"The tenant has no outbound connection named '{connection}'.",
            hint=f"its outbound connections: {names}",
        ) from None


def counts_by_status(*, connection_id: int) -> dict[str, int]:
    """The connection's outbox messages per status (the admin's connection page)."""
    rows = (OutboxMessage.objects.filter(connection_id=connection_id)
            .values("status").annotate(n=Count("pk")).values_list("status", "n"))
    return dict(rows)

