"""Tenants (superusers manage them; members see theirs read-only) and memberships."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from ..models import Membership, Tenant
from ..services.access import tenancy
from .base import HideOtherTenantsObjectsMixin


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(HideOtherTenantsObjectsMixin, admin.ModelAdmin):
    """Tenants are created by superusers; members see their own tenants read-only."""

    list_display = ["name", "slug", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest):
        return tenancy.scope(super().get_queryset(request), request.user, field="id")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and tenancy.can(request.user, None, action="view")

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, obj.pk if obj else None, action="view")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "tenant__name", "tenant__slug"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser
