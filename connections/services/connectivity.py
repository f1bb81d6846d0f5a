"""The connectivity test of a connection: resolve its credential, run the probe, record the result.

    result = run_connectivity_test(kind="inbound", connection_id=7)
    result.ok, result.summary, result.report   # report: JSON-ready dict, never the secret

Steps reported: credential (resolving the deployed User Credentials artifact) and then the
probe's own: dns, tcp, tls, greeting, capabilities, auth, and per protocol folders/folder/status
(IMAP), stat/uidl (POP3) or addresses (SMTP, only when addresses are given). The last result is
stored on the connection (last_test_at/ok/summary/report) in a short write after the network
I/O; no transaction is open while the server is talked to.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any, Literal

from django.utils import timezone

from ..errors import ConfigurationError, TenantMailError
from ..mail.probe import run_probe
from ..models import InboundConnection, OutboundConnection, Tenant
from .connection_settings import (
    Connection,
    connection_kind,
    connection_protocol,
    mail_settings_for,
    open_credential,
    warnings_for,
)

log = logging.getLogger(__name__)

Kind = Literal["inbound", "outbound"]
MODELS: dict[str, type[InboundConnection] | type[OutboundConnection]] = {
    "inbound": InboundConnection, "outbound": OutboundConnection,
}
MAX_CHECK_ADDRESSES = 50


class ConnectionNotFound(TenantMailError):
    """No connection of that name (or id) in the tenant, or the name is ambiguous."""


@dataclass
class ConnectivityResult:
    kind: str
    connection_id: int
    ok: bool
    summary: str
    tested_at: dt.datetime
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.report.get("steps", [])

    @property
    def failed_step(self) -> dict[str, Any] | None:
        return next((s for s in self.steps if not s["ok"]), None)


# --------------------------------------------------------------------------- lookup
def find_connection(*, tenant_slug: str, name: str, kind: Kind | None = None) -> Connection:
    """The inbound or outbound connection `name` of the tenant `tenant_slug`.

    With kind None the name must be unambiguous across inbound and outbound connections.
    """
    tenant = Tenant.objects.filter(slug=tenant_slug).first()
    if tenant is None:
        known = ", ".join(Tenant.objects.order_by("slug").values_list("slug", flat=True)[:20])
        raise ConnectionNotFound(
            f"No tenant with slug '{tenant_slug}'.", hint=f"known tenants: {known or 'none'}"
        )
    kinds = [kind] if kind else ["inbound", "outbound"]
    found = [obj for k in kinds for obj in MODELS[k].objects.filter(tenant=tenant, name=name)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConnectionNotFound(
            f"Tenant '{tenant_slug}' has both an inbound and an outbound connection named '{name}'.",
            hint="choose one with --kind inbound or --kind outbound",
        )
    names = sorted(
        f"{k}:{n}" for k in kinds for n in MODELS[k].objects.filter(tenant=tenant).values_list("name", flat=True)
    )
    close = [n for n in names if n.split(":", 1)[1].lower() == name.lower()]
    raise ConnectionNotFound(
        f"Tenant '{tenant_slug}' has no {kind + ' ' if kind else ''}connection named '{name}'.",
        hint=(f"did you mean {close[0].split(':', 1)[1]!r} ({close[0].split(':')[0]})? " if close else "")
        + f"its connections: {', '.join(names[:30]) or 'none'}",
    )


def get_connection(*, kind: Kind, connection_id: int) -> Connection:
    if kind not in MODELS:
        raise ValueError(f"unknown connection kind {kind!r}")
    return MODELS[kind].objects.select_related("tenant").get(pk=connection_id)


# --------------------------------------------------------------------------- the test
def run_connectivity_test(
    *,
    kind: Kind,
    connection_id: int,
    check_addresses: list[str] | None = None,
    sender: str | None = None,
    store: bool = True,
) -> ConnectivityResult:
    """Test the connection now. Never raises for server, network or credential trouble:
    those are a failed step with a message and a hint."""
    connection = get_connection(kind=kind, connection_id=connection_id)
    return probe_connection(connection, check_addresses=check_addresses, sender=sender, store=store)


def probe_connection(
    connection: Connection,
    *,
    check_addresses: list[str] | None = None,
    sender: str | None = None,
    store: bool = True,
) -> ConnectivityResult:
    """As run_connectivity_test, for a connection already loaded."""
    kind = connection_kind(connection)
    protocol = connection_protocol(connection)
    tested_at = timezone.now()
    started = time.perf_counter()
    addresses = [a.strip() for a in (check_addresses or []) if a and a.strip()]
    if addresses and protocol != "smtp":
        raise ConfigurationError(
            "Checking mail addresses is an SMTP test.",
            hint="use --check-address only with outbound (SMTP) connections",
        )
    if len(addresses) > MAX_CHECK_ADDRESSES:
        raise ConfigurationError(f"At most {MAX_CHECK_ADDRESSES} addresses can be checked at once.")
    if addresses and not sender and kind == "outbound":
        sender = parseaddr(getattr(connection, "default_from", "") or "")[1] or None

    password: str | None = None
    credential_step = {"name": "credential", "ok": True, "duration_ms": 0.0, "detail": {}, "message": "",
                       "hint": "", "skipped": False}
    probe_dict: dict[str, Any] | None = None
    settings = None
    step_started = time.perf_counter()
    try:
        credential = open_credential(connection)
        if credential is None:
            credential_step.update(skipped=True, message="authentication None: no credential is used")
        else:
            password = credential.password
            credential_step["detail"] = {
                "name": credential.name, "username": credential.username, "version": credential.version,
            }
        settings = mail_settings_for(connection, credential=credential)
    except TenantMailError as exc:
        credential_step.update(ok=False, message=exc.message, hint=exc.hint)
    credential_step["duration_ms"] = round((time.perf_counter() - step_started) * 1000.0, 2)

    if settings is not None:
        probe = run_probe(settings, password, check_addresses=addresses or None, sender=sender)
        probe_dict = probe.to_dict()

    steps = [credential_step, *(probe_dict["steps"] if probe_dict else [])]
    ok = all(s["ok"] for s in steps)
    port = (settings.effective_port if settings else connection.port) or None
    target = f"{protocol.upper()} {connection.host}:{port or 'default port'}"
    if probe_dict:
        # The probe counts its own steps; the credential step is one more.
        summary = probe_dict["summary"].replace(
            f"all {len(probe_dict['steps'])} steps", f"all {len(steps)} steps", 1)
    else:
        summary = f"{target}: failed at credential: {credential_step['message']}"
    report: dict[str, Any] = {
        "ok": ok,
        "summary": summary,
        "tested_at": tested_at.isoformat(),
        "duration_ms": round((time.perf_counter() - started) * 1000.0, 2),
        "connection": {
            "kind": kind, "id": connection.pk, "name": connection.name,
            "tenant": connection.tenant.slug, "protocol": protocol, "host": connection.host,
            "port": port, "protection": connection.protection, "authentication": connection.authentication,
            "credential_name": connection.credential_name, "timeout": connection.timeout,
            "verify_certificate": connection.verify_certificate,
            "allow_plain_without_tls": connection.allow_plain_without_tls,
        },
        "warnings": warnings_for(connection),
        "steps": steps,
    }
    if addresses:
        report["check_addresses"] = addresses
        report["sender"] = sender or ""
    if password:
        report = _scrub(report, password)
        summary = report["summary"]
    if store:
        type(connection).objects.filter(pk=connection.pk).update(
            last_test_at=tested_at, last_test_ok=ok, last_test_summary=summary[:2000], last_test_report=report,
        )
        connection.last_test_at, connection.last_test_ok = tested_at, ok
        connection.last_test_summary, connection.last_test_report = summary[:2000], report
    log.info("connectivity test of %s connection %r (tenant %s): %s — %s", kind, connection.name,
             connection.tenant.slug, "passed" if ok else "FAILED", summary)
    return ConnectivityResult(kind=kind, connection_id=connection.pk, ok=ok, summary=summary,
                              tested_at=tested_at, report=report)


def _scrub(value: Any, secret: str) -> Any:
    """The secret must never be stored or shown, whatever a server echoed back."""
    if isinstance(value, str):
        return value.replace(secret, "***") if secret in value else value
    if isinstance(value, dict):
        return {_scrub(k, secret): _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, secret) for v in value]
    return value

