"""The one way to find a tenant's connection by name: management commands, the Django email
backend, the API, alert mails and the connectivity test all ask here.

`find_connection(tenant=, name=, kind=)` takes the tenant as slug, id or object; errors are
`ConnectionNotFound` (a `NotFound`: commands exit with status 2) with a hint naming what
does exist, so a typo is fixed in one go.
"""
from __future__ import annotations

from typing import Literal, Union

from ...errors import NotFound, no_tenant
from ...models import InboundConnection, OutboundConnection, Tenant

Kind = Literal["inbound", "outbound"]
Connection = Union[InboundConnection, OutboundConnection]
MODELS: dict[str, type[InboundConnection] | type[OutboundConnection]] = {
    "inbound": InboundConnection, "outbound": OutboundConnection,
}


class ConnectionNotFound(NotFound):
    """No tenant of that slug, or no connection of that name in the tenant."""


def find_tenant(*, slug: str) -> Tenant:
    """The tenant of `slug`; the error's hint lists the known slugs."""
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        known = ", ".join(Tenant.objects.order_by("slug").values_list("slug", flat=True)[:20])
        raise ConnectionNotFound(no_tenant(slug), hint=f"known tenants: {known or 'none'}")
    return tenant


def _tenant(tenant: str | int | Tenant) -> Tenant:
    if isinstance(tenant, Tenant):
        return tenant
    if isinstance(tenant, int):
        found = Tenant.objects.filter(pk=tenant).first()
        if found is None:
            raise ConnectionNotFound(f"No tenant with id {tenant}.")
        return found
    return find_tenant(slug=tenant)


def find_connection(*, tenant: str | int | Tenant, name: str, kind: Kind | None = None) -> Connection:
    """The inbound or outbound connection `name` of the tenant (slug, id or object).

    With kind None the name must be unambiguous across inbound and outbound connections.
    """
    owner = _tenant(tenant)
    kinds = [kind] if kind else ["inbound", "outbound"]
    found = [obj for k in kinds for obj in MODELS[k].objects.select_related("tenant").filter(tenant=owner, name=name)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConnectionNotFound(
            f"Tenant '{owner.slug}' has both an inbound and an outbound connection named '{name}'.",
            hint="choose one with --kind inbound or --kind outbound",
        )
    names = sorted(
        f"{k}:{n}" for k in kinds for n in MODELS[k].objects.filter(tenant=owner).values_list("name", flat=True)
    )
    close = [n for n in names if n.split(":", 1)[1].lower() == str(name).lower()]
    raise ConnectionNotFound(
        f"Tenant '{owner.slug}' has no {kind + ' ' if kind else ''}connection named '{name}'.",
        hint=(f"did you mean {close[0].split(':', 1)[1]!r} ({close[0].split(':')[0]})? " if close else "")
        + f"its connections: {', '.join(names[:30]) or 'none'}",
    )


def tenant_connections(*, tenant_slug: str, kind: Kind | None = None) -> list[Connection]:
    """Every connection of the tenant (inbound first, by name), or of one kind."""
    tenant = find_tenant(slug=tenant_slug)
    kinds = [kind] if kind else ["inbound", "outbound"]
    found = [c for k in kinds for c in MODELS[k].objects.filter(tenant=tenant).select_related("tenant").order_by("name")]
    if not found:
        raise ConnectionNotFound(f"Tenant '{tenant_slug}' has no {kind + ' ' if kind else ''}connections.")
    return found
