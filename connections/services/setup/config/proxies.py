"""Configuration as code for proxies (docs/config.md): a tenant's `proxies:` list and a
connection's `proxy:` key (a profile name, or an inline {type, host, port[, credential]}).

The validation (validation.py) owns the document, the plan (applying.py) the changes and the
write; this module knows only the proxy keys. Errors use the place form (`tenants[0].…`).
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from ....models import ProxyProfile, ProxyType
from .fields import Entry, fail, Integer, RequiredText, Text, nullable_text, one_of
from .plan import Change, Item, changed_fields, copy, created, diff, model_errors

TYPES = tuple(ProxyType.values)
INLINE_KEYS = ("type", "host", "port", "credential")
INLINE_FIELDS = ("proxy_type", "proxy_host", "proxy_port", "proxy_credential_name")


def _port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise fail(f"{port} is not a port (1 to 65535)")
    return port


class ProxyProfileEntry(Entry):
    """One entry of a tenant's `proxies:` list."""

    django_model = ProxyProfile
    name: RequiredText
    type: Annotated[Text, one_of(TYPES)]
    host: RequiredText
    port: Annotated[Integer, AfterValidator(_port)]
    credential_name: nullable_text() = Field(None, alias="credential")


def profile(v, ppath: str, node: Any) -> Item | None:
    """One entry of the tenant's `proxies:` list (values: model fields)."""
    values = ProxyProfileEntry.check(v.errors, ppath, node)
    return None if values is None else Item(ppath, values.get("name", ""), values, set(node))


def connection_proxy(v, path: str, node: dict) -> tuple[dict[str, Any], str]:
    """A connection's `proxy:` -> (inline model fields, profile name or "")."""
    cleared = {"proxy_type": "", "proxy_host": "", "proxy_port": None, "proxy_credential_name": ""}
    if "proxy" not in node or node["proxy"] is None:
        return cleared, ""
    value, where = node["proxy"], f"{path}.proxy"
    if isinstance(value, str):
        if not value.strip():
            v.err(where, "must not be empty; give a proxy name of this tenant or {type, host, port}")
        return cleared, value.strip()
    m = v.mapping(where, value, INLINE_KEYS)
    if m is None:
        return cleared, ""
    out = dict(cleared)
    for key in ("type", "host", "port"):
        if key not in m:
            v.err(f"{where}.{key}", "required")
    if "type" in m and m["type"] not in TYPES:
        v.err(f"{where}.type", f"{m['type']!r} is not one of {', '.join(TYPES)}")
    elif "type" in m:
        out["proxy_type"] = m["type"]
    if "host" in m:
        if not isinstance(m["host"], str) or not m["host"].strip():
            v.err(f"{where}.host", f"expected a host name, got {m['host']!r}")
        else:
            out["proxy_host"] = m["host"].strip()
    if "port" in m:
        if not isinstance(m["port"], int) or isinstance(m["port"], bool):
            v.err(f"{where}.port", f"expected an integer, got {m['port']!r}")
        else:
            if not 1 <= m["port"] <= 65535:
                v.err(f"{where}.port", f"{m['port']} is not a port (1 to 65535)")
            out["proxy_port"] = m["port"]
    if "credential" in m and m["credential"] is not None:
        if not isinstance(m["credential"], str):
            v.err(f"{where}.credential", f"expected a string, got {m['credential']!r}")
        else:
            out["proxy_credential_name"] = m["credential"]
    return out, ""


def export_profiles(tenant_id: int) -> list[dict[str, Any]]:
    out = []
    for p in ProxyProfile.objects.filter(tenant_id=tenant_id).order_by("name"):
        item = {"name": p.name, "type": p.type, "host": p.host, "port": p.port}
        if p.credential_name:
            item["credential"] = p.credential_name
        out.append(item)
    return out


def export_connection_proxy(conn) -> Any:
    """The `proxy:` value of a connection, or None when it goes direct (key left out)."""
    if conn.proxy_profile_id:
        return conn.proxy_profile.name
    if conn.proxy_type:
        inline = {"type": conn.proxy_type, "host": conn.proxy_host, "port": conn.proxy_port}
        if conn.proxy_credential_name:
            inline["credential"] = conn.proxy_credential_name
        return inline
    return None


def current_profile_name(conn) -> str:
    return conn.proxy_profile.name if conn.pk and conn.proxy_profile_id else ""


def with_proxy(item: dict[str, Any], conn) -> dict[str, Any]:
    """The exported connection with its `proxy:` (left out for a direct connection)."""
    value = export_connection_proxy(conn)
    if value is not None:
        item["proxy"] = value
    return item


def plan_profiles(t, tid: int | None, *, plan, work: list, errors: list[str], prune: bool) -> set[str]:
    """Plan the tenant's proxy profiles (create, update, delete with --prune); returns the
    profile names connections may use after this apply."""
    entry = ProxyProfileEntry
    existing = {p.name: p for p in ProxyProfile.objects.filter(tenant_id=tid)} if tid else {}
    for item in t.proxies:
        cur = existing.get(item.name)
        obj = copy(cur or ProxyProfile(), item.values)
        model_errors(errors, item, obj, entry)
        if cur is None:
            plan.changes.append(Change("create", "proxy", t.name, item.name, created(item.values, entry)))
            work.append(("proxy", (t.name, obj, True)))
        else:
            changes = diff(cur, item.values, entry)
            if changes:
                plan.changes.append(Change("update", "proxy", t.name, item.name, changes))
                work.append(("proxy", (t.name, obj, changed_fields(cur, item.values))))
    names = set(existing) | {i.name for i in t.proxies}
    if prune and "proxies" in t.given:
        in_file = {i.name for i in t.proxies}
        for name, obj in sorted(existing.items()):
            if name not in in_file:
                plan.changes.append(Change("delete", "proxy", t.name, name))
                work.append(("delete_proxy", obj))
                names.discard(name)
    return names


def plan_connection(item, cur, obj, profile_names: set[str], errors: list[str]) -> dict[str, tuple[Any, Any]]:
    """Check the connection's `proxy:` and remember the profile to link at write time;
    returns {"proxy": (old, new)} when it changes (else {})."""
    wanted = item.extra.get("proxy", "")
    obj._proxy_profile_name = wanted
    if wanted and wanted not in profile_names:
        known = ", ".join(sorted(profile_names)) or "none"
        errors.append(f"{item.path}.proxy: no proxy named {wanted!r} in this tenant (its proxies: {known}); "
                      "add it under the tenant's proxies, or give {type, host, port}")
    inline = {f: item.values.get(f) for f in INLINE_FIELDS}
    new = wanted or (export_connection_proxy(type("P", (), {"proxy_profile_id": None, **inline})())
                     if inline["proxy_type"] else None)
    old = export_connection_proxy(cur) if cur is not None else None
    return {"proxy": (old, new)} if old != new and not (cur is None and new is None) else {}


def link_profile(obj) -> None:
    """At write time: point the connection at its profile by name (created in this apply or before)."""
    name = getattr(obj, "_proxy_profile_name", "")
    obj.proxy_profile = ProxyProfile.objects.get(tenant=obj.tenant, name=name) if name else None
