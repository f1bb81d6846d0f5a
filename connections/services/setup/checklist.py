"""The connection-setup checklist and the readiness it gives (issue 7).

`evaluate(connection=)` lists what is done and what is missing for one connection;
`evaluate_many(connections=)` does the same for a list with one query for all the
User Credentials artifacts involved (no query per row). The readiness follows from the
items: any failed item -> Blocked, else any warning -> Needs attention, else Ready.
The items themselves are in `checklist_items`, their links in `checklist_links`.

Nothing here opens a socket: the connectivity item reports the last recorded test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from django.db.models import QuerySet
from django.db.models.functions import Lower

from ...models import Authentication, InboundConnection, OutboundConnection, Readiness, UserCredential
from ..access.lookup import Connection
from . import checklist_items as items_of
from .checklist_items import FAIL, OK, WARN, Item
from .connection_settings import connection_kind

_RANK = {OK: 0, WARN: 1, FAIL: 2}

AUTH_DESCRIPTIONS = {
    Authentication.ENCRYPTED: "User name and password are hashed before being sent to the server",
    Authentication.PLAIN: "User name and password are sent in plain text (only use together with SSL or TLS)",
    Authentication.NONE: "No user name and password are sent; the server must accept the connection without login",
    Authentication.OAUTH2: "An OAuth2 access token is sent (XOAUTH2 or OAUTHBEARER), only over TLS",
}


@dataclass
class Evaluation:
    connection: Connection
    items: list[Item] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return connection_kind(self.connection)

    @property
    def readiness(self) -> Readiness:
        worst = max((_RANK[i.state] for i in self.items), default=0)
        return (Readiness.READY, Readiness.NEEDS_ATTENTION, Readiness.BLOCKED)[worst]

    @property
    def problems(self) -> list[Item]:
        """Items that are not ok, failures first."""
        return sorted((i for i in self.items if i.state != OK), key=lambda i: -_RANK[i.state])

    def item(self, key: str) -> Item | None:
        return next((i for i in self.items if i.key == key), None)

    def as_dict(self) -> dict:
        c = self.connection
        return {
            "tenant": c.tenant.slug if _tenant_loaded(c) else c.tenant_id,
            "kind": self.kind, "name": c.name, "id": c.pk,
            "readiness": self.readiness.value, "readiness_label": self.readiness.label,
            "items": [i.as_dict() for i in self.items],
            **_push_json(c),
        }


def _push_json(c: Connection) -> dict:
    """{"push": {state, connected_since, last_event_at, …}} for an inbound connection with push on."""
    if not isinstance(c, InboundConnection) or not c.push:
        return {}
    from ..push.state import push_state

    return {"push": push_state(c)}


def _tenant_loaded(c: Connection) -> bool:
    return c._meta.get_field("tenant").is_cached(c)


# --------------------------------------------------------------------------- public API

def evaluate(*, connection: Connection, credentials: dict[tuple[int, str], UserCredential] | None = None) -> list[Item]:
    """The checklist items of one connection, in the documented order."""
    return _evaluate(connection, _credentials_for([connection]) if credentials is None else credentials).items


def evaluation(*, connection: Connection) -> Evaluation:
    return _evaluate(connection, _credentials_for([connection]))


def readiness(*, connection: Connection) -> Readiness:
    return evaluation(connection=connection).readiness


def evaluate_many(*, connections: Iterable[Connection]) -> list[Evaluation]:
    """Evaluations for many connections with one query for all their credentials."""
    from ..monitoring.outbound import attach

    conns = list(connections)
    creds = _credentials_for(conns)
    attach(conns)  # outbound send states: one query (none after connections_for)
    return [_evaluate(c, creds) for c in conns]


def connections_for(*, tenant_ids: Sequence[int] | None) -> list[Connection]:
    """Every inbound and outbound connection of the tenants (all when None), tenant loaded."""
    out: list[Connection] = []
    for model in (InboundConnection, OutboundConnection):
        related = ("tenant", "send_state") if model is OutboundConnection else ("tenant",)
        qs = model.objects.select_related(*related).order_by("tenant__slug", "name")
        if tenant_ids is not None:
            qs = qs.filter(tenant_id__in=list(tenant_ids))
        out.extend(qs)
    return out


def ids_with_readiness(*, queryset: QuerySet, value: str) -> list[int]:
    """Primary keys of the connections in `queryset` whose readiness is `value` (list filter)."""
    return [e.connection.pk for e in evaluate_many(connections=queryset) if e.readiness == value]


# --------------------------------------------------------------------------- evaluating

def _credentials_for(conns: Sequence[Connection]) -> dict[tuple[int, str], UserCredential]:
    """(tenant id, name) -> the artifacts the connections name, in one query."""
    wanted = [c for c in conns if c.authentication != Authentication.NONE and (c.credential_name or "").strip()]
    if not wanted:
        return {}
    # Only the names referred to, compared case-insensitively so that a near miss can be named.
    names = {c.credential_name.strip().lower() for c in wanted}
    qs = UserCredential.objects.annotate(lname=Lower("name")).filter(
        tenant_id__in={c.tenant_id for c in wanted}, lname__in=names
    )
    return {(u.tenant_id, u.name): u for u in qs}


def _evaluate(c: Connection, creds: dict[tuple[int, str], UserCredential]) -> Evaluation:
    ev = Evaluation(c)
    items = ev.items
    auth = Authentication(c.authentication)
    items.append(Item("authentication", OK, f"Authentication: {auth.label}", AUTH_DESCRIPTIONS[auth]))
    if auth != Authentication.NONE:
        items.extend(items_of.credential_items(c, creds))
    items.append(items_of.transport_item(c))
    items.append(items_of.connectivity_item(c, creds))
    if isinstance(c, InboundConnection):
        items.append(items_of.schedule_item(c))
        items.append(items_of.post_processing_item(c))
        items.extend(items_of.runtime_items(c))
        if c.push:
            items.append(items_of.push_item(c))
    else:
        items.append(items_of.default_from_item(c))
        items.append(items_of.outbound_enabled_item(c))
        items.extend(items_of.runtime_items(c))
    return ev
