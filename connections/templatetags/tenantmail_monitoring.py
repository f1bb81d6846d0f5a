"""Template tags: the operations view's card on the admin index and its link on the dashboard."""
from __future__ import annotations

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def operations_card(context) -> dict | None:
    """For a user who may view alerts: the operations view's URL and the alerts firing in the
    user's tenants (all, with system alerts, for superusers); None otherwise. One query."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    cached = getattr(request, "_tm_operations_card", False)
    if cached is not False:  # the index shows the card and the dashboard's link: one query
        return cached
    request._tm_operations_card = _card(request, user)
    return request._tm_operations_card


def _card(request, user) -> dict | None:
    from django.contrib import admin
    from django.db.models import Count
    from django.urls import reverse

    from ..models import Alert, AlertState
    from ..services.access import tenancy

    model_admin = admin.site._registry.get(Alert)
    if model_admin is None or not model_admin.has_view_permission(request):
        return None
    firing = Alert.objects.filter(state=AlertState.FIRING)
    tenant_ids = tenancy.tenant_ids(user)
    if tenant_ids is not None:
        firing = firing.filter(tenant_id__in=tenant_ids)
    counts = dict(firing.values_list("severity").annotate(n=Count("pk")).order_by())
    return {"url": reverse("admin:connections_operations"), "critical": counts.get("critical", 0),
            "warning": counts.get("warning", 0), "firing": sum(counts.values())}
