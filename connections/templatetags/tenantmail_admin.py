"""Template tags for TenantMail's admin pages (the index dashboard)."""
from __future__ import annotations

from django import template

from ..services.setup import dashboard

register = template.Library()


@register.simple_tag(takes_context=True)
def tenant_dashboard(context) -> list:
    """Per-tenant summaries for the signed-in user (only the tenants the user may view)."""
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    if user is None or not user.is_authenticated:
        return []
    return dashboard.tenant_summaries(user=user)


@register.simple_tag(takes_context=True)
def first_steps(context) -> list:
    """The three first steps while the user sees no connection (connections.services.setup.first_steps)."""
    from ..services.setup.first_steps import first_steps as steps

    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    if user is None or not user.is_authenticated or request is None:
        return []
    from django.contrib import admin

    def can_add(model) -> bool:
        model_admin = admin.site._registry.get(model)
        return model_admin is not None and model_admin.has_add_permission(request)

    return steps(user=user, can_add=can_add)


@register.filter
def admin_change_url(connection) -> str:
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse(f"admin:connections_{connection._meta.model_name}_change", args=[connection.pk])
    except NoReverseMatch:
        return ""


@register.filter
def tm_when(value, arg: str = "") -> str:
    """A moment in the admin's one format (connections.services.common.dates): `{{ dt|tm_when }}`,
    `{{ dt|tm_when:"seconds" }}`."""
    from ..services.common import dates

    return dates.short(value, seconds=arg == "seconds")
