"""`apply`: make the database match a configuration file, in three steps:
1. validate the whole document (validation.py) and collect every error with its place;
2. compute the plan: the creates, updates, deletes and deploys that make the database match
   (here per tenant; credentials.py, proxies.py, connections.py, prune.py per list);
3. unless it is a dry run, write the plan in one transaction (writing.py).
Nothing is written when any error is found. Secrets never appear in the plan or in errors.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from django.db import IntegrityError, transaction

from ....errors import ConfigurationError
from ....models import InboundConnection, OutboundConnection, Tenant, UserCredential
from ...monitoring import alerts_config
from . import connections, credentials, plan as plans, proxies, writing
from .errors import ConfigValidationError, document_order
from .plan import Change, Plan, TenantItem
from .prune import plan_prune
from .schema import TenantEntry
from .validation import validate_document


def apply(
    document: Any,
    *,
    dry_run: bool = False,
    prune: bool = False,
    environ: Mapping[str, str] | None = None,
    user: Any = None,
    base_dir: Path | None = None,
) -> Plan:
    """Make the database match `document` (parsed YAML); return the plan of changes.
    `base_dir`: the folder relative `trusted_ca_file` paths are read from (the file's).

    Raises ConfigValidationError, listing every problem, before anything is written.
    """
    environ = os.environ if environ is None else environ
    tenants, errors = validate_document(document, base_dir)
    if errors or dry_run:
        # With errors, still run the database checks (read only) so that every error is listed.
        plan = _plan_and_write(tenants, prune=prune, environ=environ, user=user, write=False, errors=errors)
        plan.dry_run = True
        return plan
    try:
        with transaction.atomic():
            return _plan_and_write(tenants, prune=prune, environ=environ, user=user, write=True, errors=[])
    except IntegrityError:
        # Someone created or renamed the same rows between our reads and writes.
        raise ConfigurationError(
            "The database changed while the file was being applied; nothing was written.",
            hint="apply the file again",
        ) from None


def _plan_and_write(tenants: list[TenantItem], *, prune: bool, environ: Mapping[str, str], user: Any,
                    write: bool, errors: list[str]) -> Plan:
    plan = Plan()
    errors = list(errors)
    slugs = [t.name for t in tenants]
    lock = Tenant.objects.select_for_update() if write else Tenant.objects
    existing_tenants = {t.slug: t for t in lock.filter(slug__in=slugs)}
    tids = [t.pk for t in existing_tenants.values()]
    by_tenant = {
        "credentials": plans.index(UserCredential.objects.filter(tenant_id__in=tids)),
        "outbound": plans.index(OutboundConnection.objects.filter(tenant_id__in=tids)),
        "inbound": plans.index(InboundConnection.objects.filter(tenant_id__in=tids)),
    }
    work: list[tuple[str, Any]] = []  # (step, payload) in the order to write
    for t in tenants:
        current = existing_tenants.get(t.name)
        existing = {kind: rows.get(current.pk if current else None, {}) for kind, rows in by_tenant.items()}
        _plan_tenant(t, current, existing, plan=plan, work=work, errors=errors, environ=environ, user=user,
                     prune=prune)
    if prune:
        others = Tenant.objects.exclude(slug__in=slugs).order_by("slug").values_list("slug", flat=True)
        for slug in others:
            plan.notes.append(f"tenant {slug} is not in the file and is kept (apply_config never deletes tenants).")
    if errors:
        raise ConfigValidationError(sorted(errors, key=document_order))
    if write and plan.changes:
        writing.write(work, user=user)
        plan.applied = True
    return plan


def _plan_tenant(t: TenantItem, current: Tenant | None, existing: dict[str, dict[str, Any]], *, plan: Plan,
                 work: list, errors: list[str], environ: Mapping[str, str], user: Any, prune: bool) -> None:
    """The changes of one tenant entry and of its lists (the errors the database reveals too)."""
    candidate = plans.copy(current or Tenant(), t.values)
    plans.model_errors(errors, t, candidate, TenantEntry)
    if current is None:
        plan.changes.append(Change("create", "tenant", t.name, t.name, plans.created(t.values, TenantEntry)))
    elif changes := plans.diff(current, t.values, TenantEntry):
        plan.changes.append(Change("update", "tenant", t.name, t.name, changes))
    work.append(("tenant", (t, candidate, plans.changed_fields(current, t.values) if current else True)))
    tid = current.pk if current else None
    if t.extra.get("alerts") is not None:
        names = {o.name for o in t.outbound} | set(existing["outbound"])
        alerts_config.check_email_via(errors, f"{t.path}.alerts", t.extra["alerts"], names)
        if alert_diff := alerts_config.diff(current, t.extra["alerts"]):
            plan.changes.append(Change("update", "alerts", t.name, t.name, alert_diff))
            work.append(("alerts", (t.name, t.extra["alerts"])))
    for c in t.credentials:
        credentials.plan_credential(c, t, tid, existing["credentials"].get(c.name), plan=plan, work=work,
                                    errors=errors, environ=environ, user=user)
    profile_names = proxies.plan_profiles(t, tid, plan=plan, work=work, errors=errors, prune=prune)
    for kind in ("outbound", "inbound"):
        for item in getattr(t, kind):
            connections.plan_connection(kind, item, t, existing[kind].get(item.name), plan=plan, work=work,
                                        errors=errors, creds=existing["credentials"], profile_names=profile_names,
                                        environ=environ)
    if prune and current is not None:
        plan_prune(t, tid, existing, plan=plan, work=work, errors=errors)
