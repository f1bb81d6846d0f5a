"""`export`: the configuration of tenants as a document that `apply` takes back unchanged, and
`dump`, its YAML text (schedules and webhooks on one line, PEM as blocks). No secret is
exported: a password is referenced by the name of its environment variable."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import yaml

from ....errors import NotFound, no_tenant
from ....models import CredentialStatus, InboundConnection, OutboundConnection, Protocol, Tenant, UserCredential
from ...monitoring import alerts_config
from . import oauth2, proxies, schedules, webhooks
from .credentials import password_env_name
from .fields import to_yaml
from .schema import CREDENTIAL_KEYS, IMAP_ONLY_KEYS, INBOUND_KEYS, OUTBOUND_KEYS, TENANT_KEYS


def export(*, tenant_slugs: Sequence[str] | None = None) -> dict[str, Any]:
    """The configuration of the given tenants (all when None) as a plain document."""
    tenants = Tenant.objects.order_by("slug")
    if tenant_slugs:
        tenants = tenants.filter(slug__in=list(tenant_slugs))
        missing = sorted(set(tenant_slugs) - set(tenants.values_list("slug", flat=True)))
        if missing:
            raise NotFound(
                " ".join(no_tenant(s) for s in missing),
                hint="list the tenants with `python manage.py export_config` (no arguments)",
            )
    tenants = list(tenants)
    ids = [t.pk for t in tenants]
    rows: dict[type, dict[int, list]] = {}
    for model in (UserCredential, OutboundConnection, InboundConnection):
        rows[model] = {i: [] for i in ids}
        for row in model.objects.filter(tenant_id__in=ids).order_by("name"):
            rows[model][row.tenant_id].append(row)
    # The names an applied file gave are written back as they were; the others are derived,
    # avoiding every name already in use.
    used_env = {c.password_env for cs in rows[UserCredential].values() for c in cs if c.password_env}
    doc_tenants = []
    for t in tenants:
        entry: dict[str, Any] = {k.key: to_yaml(k, getattr(t, k.field)) for k in TENANT_KEYS}
        entry["credentials"] = [_credential(t, c, used_env) for c in rows[UserCredential][t.pk]]
        if profiles := proxies.export_profiles(t.pk):
            entry["proxies"] = profiles
        entry["outbound"] = [
            proxies.with_proxy({k.key: to_yaml(k, getattr(o, k.field)) for k in OUTBOUND_KEYS if k.key not in _omitted(o)}, o)
            for o in rows[OutboundConnection][t.pk]
        ]
        entry["inbound"] = [_inbound(i) for i in rows[InboundConnection][t.pk]]
        alerts = alerts_config.export(tenant=t)
        if alerts is not None:
            entry["alerts"] = alerts
        doc_tenants.append(entry)
    return {"tenants": doc_tenants}


def _credential(t: Tenant, c: UserCredential, used_env: set[str]) -> dict[str, Any]:
    env_name = c.password_env or password_env_name(t.slug, c.name)
    suffix = 2
    while not c.password_env and env_name in used_env:  # names differing only in punctuation
        env_name = f"{password_env_name(t.slug, c.name)[:-len('_PASSWORD')]}_{suffix}_PASSWORD"
        suffix += 1
    used_env.add(env_name)
    item = {k.key: to_yaml(k, getattr(c, k.field)) for k in CREDENTIAL_KEYS}
    item["password_env"] = env_name
    # Only an artifact whose deployed values are its current values: applying the
    # export to the same database then changes nothing.
    item["deploy"] = not _has_undeployed_changes(c)
    return oauth2.export(c, item, env_name)


def _inbound(i: InboundConnection) -> dict[str, Any]:
    item = {}
    for k in INBOUND_KEYS:
        if i.protocol == Protocol.POP3 and k.key in IMAP_ONLY_KEYS or k.key in _omitted(i):
            continue
        item[k.key] = to_yaml(k, getattr(i, k.field))
        if k.key == "archive_folder":
            item["schedule"] = schedules.to_yaml(i)
    hook = webhooks.export(i)
    if hook:
        item["webhook"] = hook
    return proxies.with_proxy(item, i)


def _has_undeployed_changes(cred: UserCredential) -> bool:
    if cred.decryption_problem():
        # The passwords cannot be compared without the key (their ciphertexts always differ):
        # trust the status the artifact had, so an export under a missing key does not
        # silently turn `deploy: true` into `deploy: false`.
        return not cred.is_deployed or cred.username != cred.deployed_username or cred.status == CredentialStatus.STORED
    return cred.has_undeployed_changes


def _omitted(connection) -> set[str]:
    """Optional keys left out of the export while unused (files without OAuth2 stay as they were)."""
    return set() if connection.sasl_mechanism else {"sasl_mechanism"}


class _FlowMap(dict):
    """A mapping written on one line ({every: 300}), as in the documented schema."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None  # PEM blocks stay readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(
    _FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True)
)


def dump(document: Mapping[str, Any]) -> str:
    """YAML text of a document from `export` (schedules on one line, PEM as blocks)."""
    def prepare(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            out = {k: prepare(v, k) for k, v in node.items()}
            return _FlowMap(out) if key in ("schedule", "webhook") else out
        if isinstance(node, list):
            return [prepare(v) for v in node]
        return node

    return yaml.dump(
        prepare(dict(document)), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
        allow_unicode=True, width=100,
    )
