"""One tenant's connections with a one-word state, for the API (GET /api/v1/connections/)."""
from __future__ import annotations

from django.utils import timezone

from ...models import InboundConnection, OutboundConnection, Webhook

MAX_CONNECTIONS = 2000


def _inbound_state(c: InboundConnection) -> tuple[str, str]:
    if not c.enabled:
        return "disabled", ""
    if c.backoff_until and c.backoff_until > timezone.now():
        return "backoff", c.last_error
    if c.last_poll_ok is None:
        return "untested", ""
    return ("ok", "") if c.last_poll_ok else ("failing", c.last_error)


def _outbound_state(c: OutboundConnection) -> tuple[str, str]:
    if not c.enabled:
        return "disabled", ""
    if c.last_test_ok is None:
        return "untested", ""
    return ("ok", "") if c.last_test_ok else ("failing", c.last_test_summary)


def connection_states(*, tenant_id: int) -> list[dict]:
    hooks = {w.connection_id: w for w in Webhook.objects.filter(tenant_id=tenant_id, connection__isnull=False)}
    rows: list[dict] = []
    for c in InboundConnection.objects.filter(tenant_id=tenant_id).order_by("name")[:MAX_CONNECTIONS]:
        state, detail = _inbound_state(c)
        hook = hooks.get(c.pk)
        rows.append({
            "id": c.pk, "name": c.name, "direction": "inbound", "protocol": c.protocol, "host": c.host,
            "enabled": c.enabled, "state": state, "detail": detail,
            "last_activity_at": c.last_poll_at.isoformat() if c.last_poll_at else None,
            "webhook": {"url": hook.url, "enabled": hook.enabled, "state": hook.state,
                        "detail": hook.state_detail} if hook else None,
        })
    for c in OutboundConnection.objects.filter(tenant_id=tenant_id).order_by("name")[:MAX_CONNECTIONS]:
        state, detail = _outbound_state(c)
        rows.append({
            "id": c.pk, "name": c.name, "direction": "outbound", "protocol": "smtp", "host": c.host,
            "enabled": c.enabled, "state": state, "detail": detail,
            "last_activity_at": c.last_test_at.isoformat() if c.last_test_at else None, "webhook": None,
        })
    return rows
