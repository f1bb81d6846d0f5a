"""Admin: alerts (tenant-scoped; system alerts for superusers only), alert settings, and the
operations view with its lock monitor (admin/connections/alert/operations/)."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from connections.conf import conf
from ..models import Alert, AlertSettings, AlertState
from ..services.access import tenancy
from ..services.monitoring import alerts as alert_service
from ..services.monitoring import operations
from .base import TenantScopedAdmin



@admin.register(Alert)
class AlertAdmin(TenantScopedAdmin):
    list_display = ["state", "severity", "title", "tenant", "first_seen", "last_seen", "acknowledged_at"]
    list_filter = ["state", "severity", "kind"]
    search_fields = ["title", "key"]
    ordering = ["state", "-last_seen"]
    readonly_fields = [f.name for f in Alert._meta.fields]
    actions = ["acknowledge"]
    change_list_template = "admin/connections/alert/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Acknowledge (no more reminders)", permissions=["run"])
    def acknowledge(self, request: HttpRequest, queryset) -> None:
        n = alert_service.acknowledge(alert_ids=queryset.values_list("pk", flat=True), user=request.user)
        self.message_user(request, f"{n} alert(s) acknowledged.", messages.SUCCESS)

    def get_urls(self):
        return [
            path("operations/", self.admin_site.admin_view(self.operations_view), name="connections_operations"),
            path("operations/locks/<int:lock_id>/release/", self.admin_site.admin_view(self.release_lock_view),
                 name="connections_lock_release"),
            *super().get_urls(),
        ]

    def operations_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        data = operations.overview(tenant_ids=tenancy.tenant_ids(request.user))
        can_release = tenancy.can(request.user, None, action="run")
        context = {
            **self.admin_site.each_context(request), "title": "Operations", "data": data,
            "refresh": conf.OPERATIONS_REFRESH_SECONDS, "can_release": can_release, "opts": self.model._meta,
            "firing": AlertState.FIRING,
        }
        return TemplateResponse(request, "admin/connections/operations.html", context)

    def release_lock_view(self, request: HttpRequest, lock_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        released = operations.release_lock(lock_id=lock_id, tenant_ids=tenancy.tenant_ids(request.user, action="run"))
        if released is None:
            self.message_user(request, "No such lock (already released, or not yours to release).", messages.WARNING)
        else:
            self.message_user(request, f"Lock {released.key} released; the poll holding it stops at its next "
                                       "renewal.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:connections_operations"))


@admin.register(AlertSettings)
class AlertSettingsAdmin(TenantScopedAdmin):
    list_display = ["tenant", "email_via", "webhook_url", "failing_after", "remind_every_hours"]
