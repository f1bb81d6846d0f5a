"""Admin of proxy profiles, and the proxy / push panels of the connection pages."""
from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from ..models import InboundConnection, ProxyProfile
from ..services.push.state import describe as describe_push
from ..services.push.state import push_state
from .base import TenantScopedAdmin

PROXY_FIELDSET = ("Proxy", {
    "fields": ["proxy_profile", "proxy_type", "proxy_host", "proxy_port", "proxy_credential_name"],
    "classes": ["collapse"],
    "description": "Reach the mail server through a SOCKS5 or HTTP CONNECT proxy: choose a proxy profile of "
                   "the tenant, or give an inline proxy (type, host, port, optional Credential Name). TLS stays "
                   "end to end: the certificate is checked against the mail server's name.",
})


@admin.register(ProxyProfile)
class ProxyProfileAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "type", "host", "port", "credential_name"]
    list_filter = ["type", "tenant"]
    search_fields = ["name", "host", "credential_name", "tenant__name", "tenant__slug"]
    fields = ["tenant", "name", "type", "host", "port", "credential_name"]


class PushPanelMixin:
    """The inbound page's read-only push state (connected since, last event)."""

    @admin.display(description="push state")
    def push_state_text(self, obj: InboundConnection | None) -> str:
        if obj is None or obj.pk is None or not obj.push:
            return "Push is off: the connection is polled on its schedule."
        level, text = describe_push(obj)
        info = push_state(obj) or {}
        colour = "#417505" if level == "ok" else "#b36b00"
        holder = f" (run_idle {info['holder']})" if info.get("holder") else ""
        return format_html('<span class="tm-push-state" style="color:{}">{}</span>{}', colour, text, holder)
