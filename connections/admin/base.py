"""Tenant scoping for every admin of a tenant-owned model.

Superusers see everything. Other staff users see only rows of their tenants: list
querysets, foreign-key choices and add forms are scoped, and the change URL of another
tenant's object answers 404. Viewer: read-only; operator: may run actions; admin: may
add, change and delete.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import Http404, HttpRequest

from ..services import tenancy


class TenantScopedAdmin(admin.ModelAdmin):
    """Base of the admin of every model with a `tenant` foreign key."""

    # --- what the user sees
    def get_queryset(self, request: HttpRequest):
        return tenancy.scope(super().get_queryset(request), request.user)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Another tenant's object must not even be confirmed to exist.
        raise Http404("No such object.")

    @staticmethod
    def _obj_tenant_id(obj: Any) -> int | None:
        return None if obj is None else obj.tenant_id

    # --- permissions by role, not by Django model permissions
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and tenancy.can(request.user, None, action="view")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, self._obj_tenant_id(obj), action="view")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and tenancy.can(request.user, None, action="change")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, self._obj_tenant_id(obj), action="change")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, self._obj_tenant_id(obj), action="change")

    def has_run_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """For actions and buttons that do work: connectivity tests, polls, sends, deploys."""
        return request.user.is_staff and tenancy.can(request.user, self._obj_tenant_id(obj), action="run")

    # --- forms
    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is None:
            return field
        model = db_field.related_model
        if model._meta.model_name == "tenant":
            field.queryset = tenancy.tenants(request.user, action="change")
        elif any(f.name == "tenant" for f in model._meta.get_fields()):
            field.queryset = tenancy.scope(field.queryset, request.user, action="change")
        return field

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if "tenant" not in initial:
            ids = tenancy.tenant_ids(request.user, action="change")
            if ids is not None and len(ids) == 1:
                initial["tenant"] = ids[0]
        return initial
