"""Alert notifications: one e-mail and one webhook call per tenant per watchdog pass, listing
every alert that fired, resolved or is due a reminder (so 500 connections failing on one host
make one notification). Tenant e-mail goes through the tenant's outbound connection
(`alerts.email_via`, the outbox); system alerts through Django's EMAIL_BACKEND. Webhooks are
rows (AlertDelivery) posted by a Celery task, HMAC-signed, retried with backoff.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.request
from datetime import datetime

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from ...errors import TenantMailError
from ...models import Alert, AlertSettings, Tenant, AlertDelivery
from ..access.lookup import ConnectionNotFound, find_connection
from ..common.guarded_http import TargetBlocked, open_url
from . import settings as mon
from .alerts import FIRED, RESOLVED, Changes

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-TenantMail-Signature"
MAX_WEBHOOK_ATTEMPTS = 8


class WebhookError(TenantMailError):
    """A webhook endpoint did not accept an alert notification."""


def _alert_dict(event: str, alert: Alert) -> dict:
    return {
        "event": event, "key": alert.key, "kind": alert.kind, "severity": alert.severity, "state": alert.state,
        "title": alert.title, "detail": alert.detail, "subjects": alert.subjects,
        "first_seen": alert.first_seen.isoformat(), "last_seen": alert.last_seen.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def subject_line(events: list[tuple[str, Alert]], tenant_label: str) -> str:
    fired = sum(1 for e, _ in events if e != RESOLVED)
    resolved = len(events) - fired
    if len(events) == 1:
        event, alert = events[0]
        word = {FIRED: "FIRING", RESOLVED: "RESOLVED"}.get(event, "STILL FIRING")
        return f"[TenantMail {tenant_label}] {word}: {alert.title}"[:900]
    parts = [f"{fired} firing"] * bool(fired) + [f"{resolved} resolved"] * bool(resolved)
    return f"[TenantMail {tenant_label}] {', '.join(parts)}"


def body_text(events: list[tuple[str, Alert]]) -> str:
    lines = []
    for event, alert in events:
        word = {FIRED: "FIRING", RESOLVED: "RESOLVED"}.get(event, "STILL FIRING (reminder)")
        lines.append(f"{word}: {alert.title}")
        lines.append(f"  since {alert.first_seen:%Y-%m-%d %H:%M:%S} UTC"
                     + (f", resolved {alert.resolved_at:%Y-%m-%d %H:%M:%S} UTC" if alert.resolved_at else ""))
        if alert.subjects:
            lines.append(f"  {len(alert.subjects)} affected: " + ", ".join(alert.subjects))
        if alert.detail and event != RESOLVED:
            lines.extend("  " + line for line in alert.detail.splitlines())
        lines.append("")
    return "\n".join(lines)


def send(*, changes: Changes, now: datetime | None = None) -> None:
    """Notify every tenant's (and the system's) channels of its changes; errors are logged,
    never raised (the watchdog pass must go on)."""
    if not changes:
        return
    grouped = changes.by_tenant()
    tenants = {t.pk: t for t in Tenant.objects.filter(pk__in=[t for t in grouped if t is not None])}
    prefs = {s.tenant_id: s for s in AlertSettings.objects.filter(tenant_id__in=list(tenants))}
    for tenant_id, events in grouped.items():
        try:
            if tenant_id is None:
                _system(events)
            elif tenant_id in prefs:
                _tenant(tenants[tenant_id], prefs[tenant_id], events)
        except Exception:
            log.exception("alerts: notifying tenant %s failed", tenant_id)
        for event, alert in events:
            log.warning("alert %s: %s", event, alert.title)


def _system(events) -> None:
    recipients = mon.system_email_to()
    if recipients:
        send_mail(subject_line(events, "system"), body_text(events), None, recipients)  # DEFAULT_FROM_EMAIL
    url, _secret = mon.system_webhook()
    if url:
        _queue_webhook(tenant_id=None, url=url, events=events)


def _tenant(tenant: Tenant, prefs: AlertSettings, events) -> None:
    if prefs.email_to and prefs.email_via:
        from ..outbound.enqueue import enqueue

        try:
            via = find_connection(tenant=tenant, name=prefs.email_via, kind="outbound")
        except ConnectionNotFound:
            log.error("alerts of %s: outbound connection %r (email_via) does not exist", tenant.slug, prefs.email_via)
        else:
            with transaction.atomic():
                enqueue(connection_id=via.pk, to=list(prefs.email_to), subject=subject_line(events, tenant.slug),
                        text=body_text(events), extra_headers={"X-TenantMail-Alert": "1"})
    if prefs.webhook_url:
        _queue_webhook(tenant_id=tenant.pk, url=prefs.webhook_url, events=events)


def _queue_webhook(*, tenant_id: int | None, url: str, events) -> None:
    from ...tasks import deliver_alert_webhook

    payload = {"tenant": None, "sent_at": timezone.now().isoformat(),
               "alerts": [_alert_dict(e, a) for e, a in events]}
    if tenant_id is not None:
        payload["tenant"] = Tenant.objects.filter(pk=tenant_id).values_list("slug", flat=True).first()
    with transaction.atomic():
        delivery = AlertDelivery.objects.create(tenant_id=tenant_id, url=url, payload=payload)
        deliver_alert_webhook.delay_on_commit(delivery.pk)


def secret_for(delivery: AlertDelivery) -> str:
    """The HMAC secret: the tenant's `webhook_secret_env` variable, or ALERT_WEBHOOK_SECRET."""
    if delivery.tenant_id is None:
        return mon.system_webhook()[1]
    env = AlertSettings.objects.filter(tenant_id=delivery.tenant_id).values_list("webhook_secret_env", flat=True).first()
    return os.environ.get(env or "", "")


def sign(*, secret: str, body: bytes, timestamp: str) -> str:
    """sha256=HEX of HMAC-SHA256(secret, "<timestamp>." + body)."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def deliver(*, delivery_id: int, timeout: float = 10.0) -> bool:
    """Post one delivery (no transaction open during the request). True when delivered (or
    already); raises WebhookError when the endpoint failed (the task retries); False, with
    the attempt recorded and no retry, when the URL's host is in TENANTMAIL_BLOCKED_NETWORKS."""
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    if delivery.delivered_at:
        return True
    body = json.dumps(delivery.payload, sort_keys=True).encode("utf-8")
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "TenantMail-alerts",
               "X-TenantMail-Timestamp": timestamp, "X-TenantMail-Delivery": str(delivery.pk)}
    secret = secret_for(delivery)
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret=secret, body=body, timestamp=timestamp)
    error, blocked = "", False
    try:
        request = urllib.request.Request(delivery.url, data=body, headers=headers, method="POST")
        with open_url(request, timeout=timeout) as response:  # TENANTMAIL_BLOCKED_NETWORKS checked
            status = response.status
    except urllib.error.HTTPError as exc:
        status, error = exc.code, f"HTTP {exc.code}"
    except TargetBlocked as exc:  # nothing was sent; permanent: no retry
        status, error, blocked = 0, str(exc), True
    except (OSError, ValueError) as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"
    ok = 200 <= status < 300
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        attempts=delivery.attempts + 1, delivered_at=timezone.now() if ok else None, last_error=error[:1000])
    if blocked:
        log.error("alert webhook #%s not sent: %s", delivery.pk, error)
        return False
    if not ok:
        raise WebhookError(f"Alert webhook {delivery.url} failed: {error or f'HTTP {status}'}.")
    return True
