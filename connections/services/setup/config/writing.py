"""Step 3 of an apply: write the planned rows (inside apply's transaction), in an order that
frees names before they are reused and deletes a proxy only after its connections left it."""
from __future__ import annotations

from typing import Any

from django.db import models

from ....models import Tenant, UserCredential
from .. import credentials as credential_service
from ...inbound import schedule as schedule_service
from ...monitoring import alerts_config
from . import oauth2, proxies, webhooks


def write(work: list[tuple[str, Any]], *, user: Any) -> None:
    """Carry out the steps of the plan (`work`: (step, payload) in the order planned)."""
    tenants: dict[str, Tenant] = {}
    deploys: list[UserCredential] = []
    deletes = [payload for step, payload in work if step == "delete"]
    # Deletes first (connections before credentials), so that names are free for re-creates.
    for obj in sorted(deletes, key=lambda o: isinstance(o, UserCredential)):
        obj.delete()
    for step, payload in work:
        if step == "tenant":
            t, obj, changed = payload
            save(obj, changed)
            tenants[t.name] = obj
        elif step == "credential":
            slug, obj, password, changed, deploy = payload
            obj.tenant = tenants[slug]
            if changed:
                credential_service.save_artifact(credential=obj, password=password)
                oauth2.after_save(obj)
            if deploy:
                deploys.append(obj)
        elif step == "alerts":
            alerts_config.save(tenant=tenants[payload[0]], values=payload[1])
        elif step == "proxy":
            slug, obj, changed = payload
            obj.tenant = tenants[slug]
            save(obj, changed)
        elif step in ("outbound", "inbound"):
            _write_connection(step, *payload, tenants=tenants)
        elif step == "webhook":
            connection, spec, secret = payload
            webhooks.write(connection=connection, spec=spec, secret=secret)
    for step, payload in work:
        if step == "delete_proxy":  # after the connections stopped using it (PROTECT)
            payload.delete()
    for cred in deploys:
        credential_service.deploy(credential_id=cred.pk, user=user, source="apply_config")


def _write_connection(step: str, slug: str, obj: models.Model, changed: bool | list[str], *,
                      tenants: dict[str, Tenant]) -> None:
    obj.tenant = tenants[slug]
    proxies.link_profile(obj)
    if changed:
        save(obj, changed)
        if step == "inbound":
            schedule_service.reschedule(connection=obj)


def save(obj: models.Model, changed: bool | list[str]) -> None:
    """Create, or write only the changed settings: poll state written meanwhile by a worker
    (last poll, errors, backoff) must not be overwritten with what we read before."""
    if changed is True:
        obj.save()
    elif changed:
        fields = list(changed)
        if any(f.name == "updated_at" for f in obj._meta.concrete_fields):
            fields.append("updated_at")
        obj.save(update_fields=fields)
