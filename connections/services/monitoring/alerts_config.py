"""The `alerts:` block of a tenant in the configuration file (contract, see docs/config.md):

    alerts:
      email_to: [ops@acme.example]
      email_via: notifications        # an outbound connection of this tenant
      webhook_url: https://hooks.example/tenantmail
      webhook_secret_env: ACME_ALERT_WEBHOOK_SECRET
      failing_after: 3
      remind_every_hours: 24

Validation errors are reported through the configuration's error report (connections/services/setup/config/errors.py; FILE:LINE: place: message).
"""
from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator, URLValidator

from ...models import AlertSettings, Tenant

KEYS = ("email_to", "email_via", "webhook_url", "webhook_secret_env", "failing_after", "remind_every_hours")


def validate(v, path: str, node: Any) -> dict[str, Any] | None:
    """Model values from the block, errors through `v.err(place, message)`; None when not a mapping."""
    m = v.mapping(path, node, KEYS)
    if m is None:
        return None
    out: dict[str, Any] = {"email_to": [], "email_via": "", "webhook_url": "", "webhook_secret_env": "",
                           "failing_after": 3, "remind_every_hours": 24}
    to = m.get("email_to", [])
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not all(isinstance(a, str) for a in to):
        v.err(f"{path}.email_to", f"expected a list of e-mail addresses, got {to!r}")
    else:
        for address in to:
            try:
                EmailValidator()(address)
            except DjangoValidationError:
                v.err(f"{path}.email_to", f"{address!r} is not an e-mail address")
        out["email_to"] = to
    for key in ("email_via", "webhook_url", "webhook_secret_env"):
        if key in m and m[key] is not None:
            if not isinstance(m[key], str):
                v.err(f"{path}.{key}", f"expected a string, got {m[key]!r}")
            else:
                out[key] = m[key].strip()
    if out["email_to"] and not out["email_via"]:
        v.err(f"{path}.email_via", "required with email_to (the outbound connection that sends the alerts)")
    if out["webhook_url"]:
        try:
            URLValidator(schemes=["http", "https"])(out["webhook_url"])
        except DjangoValidationError:
            v.err(f"{path}.webhook_url", f"{out['webhook_url']!r} is not an http(s) URL")
    if out["webhook_secret_env"] and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,199}", out["webhook_secret_env"]):
        v.err(f"{path}.webhook_secret_env", f"{out['webhook_secret_env']!r} is not an environment variable name")
    for key in ("failing_after", "remind_every_hours"):
        if key in m:
            value = m[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                v.err(f"{path}.{key}", f"expected a whole number >= 1, got {value!r}")
            else:
                out[key] = value
    return out  # with errors too: the database checks (email_via) still run, nothing is written


def check_email_via(errors: list[str], path: str, values: dict[str, Any], outbound_names: set[str]) -> None:
    via = values.get("email_via")
    if via and via not in outbound_names:
        errors.append(f"{path}.email_via: {via!r} is not an outbound connection of this tenant "
                      f"(known: {', '.join(sorted(outbound_names)) or 'none'})")


def diff(tenant: Tenant | None, values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    current = AlertSettings.objects.filter(tenant=tenant).first() if tenant is not None and tenant.pk else None
    return {k: (getattr(current, k, None), v) for k, v in values.items() if getattr(current, k, None) != v}


def save(*, tenant: Tenant, values: dict[str, Any]) -> None:
    AlertSettings.objects.update_or_create(tenant=tenant, defaults=values)


def export(*, tenant: Tenant) -> dict[str, Any] | None:
    s = AlertSettings.objects.filter(tenant=tenant).first()
    if s is None:
        return None
    out: dict[str, Any] = {"email_to": list(s.email_to)}
    for key in ("email_via", "webhook_url", "webhook_secret_env"):
        if getattr(s, key):
            out[key] = getattr(s, key)
    out.update(failing_after=s.failing_after, remind_every_hours=s.remind_every_hours)
    return out
