"""`apply_config --prune`: the credentials and connections of a tenant that the file no longer
names are deleted, in the lists the tenant entry gives; never stored mail, outbox entries, a
credential a connection still uses, nor a tenant."""
from __future__ import annotations

from typing import Any

from ....models import OutboxMessage, StoredMessage
from .plan import Change, Plan, TenantItem


def plan_prune(t: TenantItem, tid: int, existing: dict[str, dict[str, Any]], *, plan: Plan, work: list,
               errors: list[str]) -> None:
    """`existing`: "credentials", "outbound", "inbound" -> name -> row of the tenant."""
    named = {kind: {i.name for i in getattr(t, kind)} for kind in ("credentials", "outbound", "inbound")}
    # Only the lists the tenant entry gives are pruned: a list left out is not managed
    # by this file (write `outbound: []` to delete them all).
    doomed_conns = [
        (kind, obj)
        for kind in ("outbound", "inbound") if kind in t.given
        for name, obj in sorted(existing[kind].items()) if name not in named[kind]
    ]
    _refuse_protected_deletes(errors, t, doomed_conns)
    for kind, obj in doomed_conns:
        plan.changes.append(Change("delete", kind, t.name, obj.name))
        work.append(("delete", obj))
    if "credentials" not in t.given:
        return
    # The connections there will be after this apply: the file's, where it gives the list.
    remaining = [
        (kind, item.name, item.values.get("credential_name") or "")
        for kind in ("outbound", "inbound") for item in getattr(t, kind)
    ] + [
        (kind, obj.name, obj.credential_name)
        for kind in ("outbound", "inbound") if kind not in t.given
        for obj in existing[kind].values()
    ]
    for name, obj in sorted(existing["credentials"].items()):
        if name in named["credentials"]:
            continue
        users = sorted(f"{kind} connection {conn!r}" for kind, conn, cred in remaining if cred == name)
        if users:
            # As in the admin: an artifact a connection uses is not deleted.
            errors.append(
                f"{t.path}.credentials: --prune would delete credential {name!r}, which "
                f"{', '.join(users)} still use{'s' if len(users) == 1 else ''}; keep it in the "
                "file, or change their credential first"
            )
            continue
        plan.changes.append(Change("delete", "credential", t.name, name))
        work.append(("delete", obj))


def _refuse_protected_deletes(errors: list[str], t: TenantItem, doomed: list[tuple[str, Any]]) -> None:
    """Stored mail and outbox entries are never deleted by a prune: say so before writing."""
    inbound_ids = [o.pk for k, o in doomed if k == "inbound"]
    outbound_ids = [o.pk for k, o in doomed if k == "outbound"]
    with_mail = set(
        StoredMessage.objects.filter(connection_id__in=inbound_ids).values_list("connection_id", flat=True).distinct()
    ) if inbound_ids else set()
    with_outbox = set(
        OutboxMessage.objects.filter(connection_id__in=outbound_ids).values_list("connection_id", flat=True).distinct()
    ) if outbound_ids else set()
    for kind, obj in doomed:
        if (kind == "inbound" and obj.pk in with_mail) or (kind == "outbound" and obj.pk in with_outbox):
            what = "stored messages" if kind == "inbound" else "outbox messages"
            errors.append(
                f"{t.path}.{kind}: --prune would delete {kind} connection {obj.name!r}, which has {what}; "
                f"keep it in the file (enabled: false to stop it) or delete its messages first"
            )
