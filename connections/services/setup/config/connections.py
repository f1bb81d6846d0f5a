"""Planning the `outbound:` and `inbound:` entries of a tenant: the rows to create or update,
checked by the models, the poller's and the sender's own rules, their credential, proxy and
webhook."""
from __future__ import annotations

from typing import Any, Mapping

from ....errors import TenantMailError
from ....models import InboundConnection, OutboundConnection
from ...inbound import checks
from ...outbound import addresses
from . import proxies, schedules, webhooks
from .plan import Change, Item, Plan, TenantItem, changed_fields, copy, created, diff, model_errors
from .schema import InboundEntry, OutboundEntry

ENTRIES = {"outbound": OutboundEntry, "inbound": InboundEntry}


def plan_connection(kind: str, item: Item, t: TenantItem, cur: Any, *, plan: Plan, work: list, errors: list[str],
                    creds: Mapping[str, Any], profile_names: set[str], environ: Mapping[str, str]) -> None:
    """The changes of one connection entry (to `plan`, `work`) or its errors."""
    entry = ENTRIES[kind]
    obj = copy(cur or entry.django_model(), item.values)
    model_errors(errors, item, obj, entry)
    if kind == "inbound":
        _inbound_rules(errors, item, obj)
    else:
        _outbound_rules(errors, item, obj)
    _credential_reference(errors, item, t, creds)
    proxy_change = proxies.plan_connection(item, cur, obj, profile_names, errors)
    if cur is None:
        fields = created({k: v for k, v in item.values.items() if k not in schedules.SCHEDULE_FIELDS}, entry)
        if kind == "inbound":
            fields["schedule"] = (None, schedules.to_yaml(obj))
        fields.update(proxy_change)
        plan.changes.append(Change("create", kind, t.name, item.name, fields))
        work.append((kind, (t.name, obj, True)))  # created: every field
    else:
        changes = {**diff(cur, item.values, entry), **proxy_change}
        if changes:
            plan.changes.append(Change("update", kind, t.name, item.name, changes))
        changed = changed_fields(cur, item.values) + (["proxy_profile"] if proxy_change else [])
        work.append((kind, (t.name, obj, changed)))
    if item.extra.get("webhook"):
        changes, secret = webhooks.plan(errors=errors, path=f"{item.path}.webhook", spec=item.extra["webhook"],
                                        current=cur, environ=environ)
        if changes:
            plan.changes.append(Change("create" if cur is None else "update", kind, t.name, item.name, changes))
            work.append(("webhook", (obj, item.extra["webhook"], secret)))


def _credential_reference(errors: list[str], item: Item, t: TenantItem, existing: Mapping[str, Any]) -> None:
    """A connection may only name a credential that exists in its tenant or that the file creates."""
    name = (item.values.get("credential_name") or "").strip()
    if not name or name in existing or name in {c.name for c in t.credentials}:
        return
    hint = [n for n in sorted({*existing, *(c.name for c in t.credentials)}) if n.lower() == name.lower()]
    errors.append(
        f"{item.path}.credential: no credential named {name!r} exists in tenant {t.name!r} or is created by "
        f"this file" + (f" (names are case-sensitive: did you mean {hint[0]!r}?)" if hint else "")
    )


def _inbound_rules(errors: list[str], item: Item, conn: InboundConnection) -> None:
    """The poller's own rules (the admin form applies the same), unless already reported."""
    to_key = InboundEntry.field_keys()
    for fname, message in checks.validation_errors(conn).items():
        where = f"{item.path}.{to_key.get(fname, fname)}"
        if not any(e.startswith((f"{where}: ", f"{where}.")) for e in errors):
            errors.append(f"{where}: {message}")


def _outbound_rules(errors: list[str], item: Item, conn: OutboundConnection) -> None:
    """From and Reply-To must be addresses the sender can use (as the admin form checks)."""
    pairs = [("from", conn.default_from), ("reply_to", conn.default_reply_to)]
    for key, field_name in (("to", "default_to"), ("cc", "default_cc"), ("bcc", "default_bcc")):
        pairs += [(key, address) for address in addresses.split_addresses([getattr(conn, field_name) or ""])]
    for key, value in pairs:
        where = f"{item.path}.{key}"
        if not value or any(e.startswith(f"{where}: ") for e in errors):
            continue
        try:
            addresses.parse_address(value, field=key)
        except TenantMailError as exc:
            message = str(exc)
            message = message[len(key) + 2:] if message.startswith(f"{key}: ") else message  # the place says it
            errors.append(f"{where}: {message}")
