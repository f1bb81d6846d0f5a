"""Step 1 of an apply: check the whole document against the schema (schema.py) and the rules
between keys, collecting every error with its place; the result is an `Item` per entry with
the model field values of the keys that passed, so that the database checks can still run.
"""
from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Any, Callable

from ....models import PostProcessing, Protocol
from ...common import pem
from ...monitoring import alerts_config
from . import oauth2, proxies, schedules, webhooks
from .errors import Report, kind_of
from .fields import ENV_NAME
from .plan import Item, TenantItem, check_duplicate
from .schema import (ARCHIVE_POST_PROCESSING, IMAP_ONLY_KEYS, POP3_POST_PROCESSING, CredentialEntry, InboundEntry,
                     OutboundEntry, TenantEntry)

def validate_document(document: Any, base_dir: Path | None = None) -> tuple[list[TenantItem], list[str]]:
    """The tenants of the file and every error found (the tenants hold what passed)."""
    v = Report()
    if document is None:
        v.err("(file)", "the file is empty; expected `tenants:` with a list of tenants")
        return [], v.errors
    root = v.mapping("(file)", document, ("tenants",))
    if root is None:
        return [], v.errors
    if "tenants" not in root:
        v.err("tenants", "required")
    tenants: list[TenantItem] = []
    seen_slugs: dict[str, str] = {}
    for ti, tnode in enumerate(v.items("tenants", root.get("tenants"))):
        tenant = _tenant(v, f"tenants[{ti}]", tnode, base_dir)
        if tenant is None:
            continue
        if tenant.name:
            if tenant.name in seen_slugs:
                v.err(f"{tenant.path}.slug", f"duplicate tenant {tenant.name!r} (also at {seen_slugs[tenant.name]})")
            seen_slugs.setdefault(tenant.name, tenant.path)
        tenants.append(tenant)
    return tenants, v.errors


def _tenant(v: Report, tpath: str, tnode: Any, base_dir: Path | None) -> TenantItem | None:
    values = TenantEntry.check(v.errors, tpath, tnode)
    if values is None:
        return None
    tenant = TenantItem(tpath, values.get("slug", ""), values, set(tnode))
    tenant.credentials = _entries(v, tpath, tnode, "credentials", "credential", lambda p, n: _credential(v, p, n))
    tenant.proxies = _entries(v, tpath, tnode, "proxies", "proxy", lambda p, n: proxies.profile(v, p, n))
    tenant.outbound = _entries(v, tpath, tnode, "outbound", "outbound connection",
                               lambda p, n: _outbound(v, p, n, base_dir))
    tenant.inbound = _entries(v, tpath, tnode, "inbound", "inbound connection",
                              lambda p, n: _inbound(v, p, n, base_dir))
    if "alerts" in tnode:  # issue 16: connections/services/monitoring/alerts_config.py
        tenant.extra["alerts"] = alerts_config.validate(v, f"{tpath}.alerts", tnode["alerts"])
    return tenant


def _entries(v: Report, tpath: str, tnode: dict, key: str, what: str,
             check: Callable[[str, Any], Item | None]) -> list[Item]:
    """The items of one list of a tenant (`credentials`, ...), each name once."""
    items: list[Item] = []
    seen: dict[str, str] = {}
    for i, node in enumerate(v.items(f"{tpath}.{key}", tnode.get(key))):
        item = check(f"{tpath}.{key}[{i}]", node)
        if item is not None:
            check_duplicate(v, seen, item, what)
            items.append(item)
    return items


def _credential(v: Report, cpath: str, cnode: Any) -> Item | None:
    values = CredentialEntry.check(v.errors, cpath, cnode)
    if values is None:
        return None
    extra: dict[str, Any] = {"deploy": False}
    secret_key = oauth2.secret_key(cnode)
    cmap = oauth2.parse(v, cpath, cnode, extra)  # OAuth2: client_secret_env is the password_env
    env = cmap.get("password_env")
    if "password_env" not in cmap:
        v.err(f"{cpath}.{secret_key}", "required (the name of the environment variable with the "
              + ("client secret)" if secret_key != "password_env" else "password)"))
    elif not isinstance(env, str) or not ENV_NAME.fullmatch(env):
        v.err(f"{cpath}.{secret_key}", f"{env!r} is not an environment variable name")
    else:
        extra["password_env"] = env
    if "deploy" in cmap:
        if not isinstance(cmap["deploy"], bool):
            v.err(f"{cpath}.deploy", f"expected true or false, got {kind_of(cmap['deploy'])} {cmap['deploy']!r}")
        else:
            extra["deploy"] = cmap["deploy"]
    return Item(cpath, values.get("name", ""), values, set(cmap), extra)


def _outbound(v: Report, opath: str, onode: Any, base_dir: Path | None) -> Item | None:
    values = OutboundEntry.check(v.errors, opath, onode)
    if values is None:
        return None
    pem.read_ca_file(mapping=onode, values=values, path=opath, base_dir=base_dir, err=v.err)
    proxy_values, proxy_name = proxies.connection_proxy(v, opath, onode)
    values.update(proxy_values)
    return Item(opath, values.get("name", ""), values, set(onode), {"proxy": proxy_name})


def _inbound(v: Report, ipath: str, inode: Any, base_dir: Path | None) -> Item | None:
    values = InboundEntry.check(v.errors, ipath, inode)
    if values is None:
        return None
    pem.read_ca_file(mapping=inode, values=values, path=ipath, base_dir=base_dir, err=v.err)
    if values.get("protocol") == Protocol.POP3:
        _pop3_rules(v, ipath, inode, values)
    pp = values.get("post_processing")
    if pp in ARCHIVE_POST_PROCESSING and not values.get("archive_folder"):
        v.err(f"{ipath}.archive_folder", f"required when post_processing is {pp}")
    if "timezone" in values:
        try:
            zoneinfo.ZoneInfo(values["timezone"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            v.err(f"{ipath}.timezone", f"{values['timezone']!r} is not a known time zone (e.g. UTC, Europe/Berlin)")
    if "schedule" in inode:
        values.update(schedules.validate(v, f"{ipath}.schedule", inode["schedule"]))
    else:
        values.update(schedules.default())
    proxy_values, proxy_name = proxies.connection_proxy(v, ipath, inode)
    values.update(proxy_values)
    item = Item(ipath, values.get("name", ""), values, set(inode), {"proxy": proxy_name})
    if "webhook" in inode:
        item.extra["webhook"] = webhooks.validate(v.err, f"{ipath}.webhook", inode["webhook"])
    return item


def _pop3_rules(v: Report, ipath: str, inode: dict, values: dict[str, Any]) -> None:
    """No folder, selection nor push; post-processing delete or keep (keep when not given)."""
    for k in IMAP_ONLY_KEYS:
        if k in inode:
            v.err(f"{ipath}.{k}", "applies to imap only; remove it for a pop3 connection")
    values.pop("folder", None)
    values.pop("selection", None)
    values.pop("push", None)
    if "post_processing" not in inode:
        values["post_processing"] = PostProcessing.KEEP.value  # safe: nothing is lost
    elif values.get("post_processing") not in (None, *POP3_POST_PROCESSING):
        v.err(f"{ipath}.post_processing",
              f"{inode['post_processing']!r} is not one of {', '.join(POP3_POST_PROCESSING)} (pop3)")
