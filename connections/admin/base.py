"""Tenant scoping for every admin of a tenant-owned model.

Superusers see everything. Other staff users see only rows of their tenants: list
querysets, list filters, foreign-key choices and add forms are scoped, and the change,
history and delete URLs of another tenant's object answer 404 (whether it exists is not
revealed). Viewer: read-only; operator: may also run actions (`has_run_permission`);
admin: may also add, change and delete.

Use:
    class ThingAdmin(TenantScopedAdmin): ...          # admin of a model with `tenant`
    class PartInline(TenantScopedInline): ...          # inline of a tenant-owned model

    @admin.action(description="Test connectivity", permissions=["run"])
    def test_selected(self, request, queryset): ...    # queryset holds only rows of
                                                       # tenants where the user may run

`edit_action` says which role right adding/changing/deleting needs: "change" (admins,
the default) or "run" (e.g. composing an outbox message is a send, open to operators).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from django.contrib import admin, messages
from django.contrib.admin.options import TO_FIELD_VAR
from django.contrib.admin.utils import NotRelationField, get_fields_from_path, unquote
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest

from ..services.access import tenancy
from ..services.access.tenancy import Action

# Which role right an admin action needs, from its `permissions=[...]`.
_ACTION_NEEDS: dict[str, Action] = {
    "view": "view", "run": "run", "add": "change", "change": "change", "delete": "change",
}


def _is_tenant_owned(model: type[models.Model]) -> bool:
    try:
        field = model._meta.get_field("tenant")
    except FieldDoesNotExist:
        return False
    return field.is_relation and field.related_model._meta.label_lower == "connections.tenant"


def _is_tenant(model: type[models.Model]) -> bool:
    return model._meta.label_lower == "connections.tenant"


class _ScopedFormFieldsMixin:
    """Foreign-key and many-to-many choices limited to what the user may write to."""

    edit_action: Action = "change"

    def _scope_choices(self, field, request: HttpRequest):
        if field is None or not hasattr(field, "queryset"):
            return field
        model = field.queryset.model
        if _is_tenant(model):
            field.queryset = tenancy.tenants(request.user, action=self.edit_action)
        elif _is_tenant_owned(model):
            field.queryset = tenancy.scope(field.queryset, request.user, action=self.edit_action)
        return field

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        return self._scope_choices(super().formfield_for_foreignkey(db_field, request, **kwargs), request)

    def formfield_for_manytomany(self, db_field, request: HttpRequest, **kwargs):
        return self._scope_choices(super().formfield_for_manytomany(db_field, request, **kwargs), request)


class HideOtherTenantsObjectsMixin:
    """Object URLs (change, history, delete) of an object outside the user's queryset
    answer 404 before any permission check, so that a 403 never confirms it exists."""

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        raise Http404("No such object.")

    def _require_visible(self, request: HttpRequest, object_id: str) -> None:
        to_field = request.POST.get(TO_FIELD_VAR, request.GET.get(TO_FIELD_VAR))
        if to_field and not self.to_field_allowed(request, to_field):
            return  # Django refuses the request itself
        if self.get_object(request, unquote(object_id), to_field) is None:
            raise Http404("No such object.")

    def changeform_view(self, request: HttpRequest, object_id=None, form_url="", extra_context=None):
        if object_id is not None:
            self._require_visible(request, object_id)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def history_view(self, request: HttpRequest, object_id, extra_context=None):
        self._require_visible(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def delete_view(self, request: HttpRequest, object_id, extra_context=None):
        self._require_visible(request, object_id)
        return super().delete_view(request, object_id, extra_context)


class TenantScopedAdmin(HideOtherTenantsObjectsMixin, _ScopedFormFieldsMixin, admin.ModelAdmin):
    """Base of the admin of every model with a `tenant` foreign key."""

    # --- what the user sees
    def get_queryset(self, request: HttpRequest):
        return tenancy.scope(super().get_queryset(request), request.user)

    def get_list_filter(self, request: HttpRequest):
        # Django's related filter lists every row of the related model (every tenant's
        # name, every connection): offer only values that occur in the user's rows.
        scoped = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str):
                try:
                    last = get_fields_from_path(self.model, entry)[-1]
                except (FieldDoesNotExist, NotRelationField):
                    last = None
                if last is not None and last.is_relation:
                    entry = (entry, admin.RelatedOnlyFieldListFilter)
            scoped.append(entry)
        return scoped

    @staticmethod
    def _obj_tenant_id(obj: Any) -> int | None:
        return None if obj is None else obj.tenant_id

    # --- permissions by role, not by Django model permissions
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and tenancy.can(request.user, None, action="view")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, self._obj_tenant_id(obj), action="view")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and tenancy.can(request.user, None, action=self.edit_action)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(
            request.user, self._obj_tenant_id(obj), action=self.edit_action
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(
            request.user, self._obj_tenant_id(obj), action=self.edit_action
        )

    def has_run_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """For actions and buttons that do work: connectivity tests, polls, sends, deploys."""
        return request.user.is_staff and tenancy.can(request.user, self._obj_tenant_id(obj), action="run")

    # --- actions: shown only to users who hold the right somewhere, and applied only to
    # the selected rows of tenants where they hold it.
    def _action_needs(self, func: Callable) -> Action:
        needs: Action = "view"
        for permission in getattr(func, "allowed_permissions", ()) or ("run",):
            need = _ACTION_NEEDS.get(permission, "run")
            if need == "change" and self.edit_action == "run":
                need = "run"
            if tenancy.ACTIONS.index(need) > tenancy.ACTIONS.index(needs):
                needs = need
        return needs

    def _scoped_action(self, func: Callable, needs: Action) -> Callable:
        @functools.wraps(func)
        def action(modeladmin, request: HttpRequest, queryset):
            allowed = tenancy.scope(queryset, request.user, action=needs)
            skipped = queryset.count() - allowed.count()
            if skipped:
                modeladmin.message_user(
                    request,
                    f"{skipped} selected object(s) skipped: your role in their tenant does not allow this.",
                    messages.WARNING,
                )
            return func(modeladmin, request, allowed)

        return action

    def get_actions(self, request: HttpRequest):
        actions = {}
        for name, (func, action_name, description) in super().get_actions(request).items():
            needs = self._action_needs(func)
            if tenancy.can(request.user, None, action=needs):
                actions[name] = (self._scoped_action(func, needs), action_name, description)
        return actions

    # --- forms
    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if "tenant" not in initial:
            tenant_id = tenancy.sole_tenant_id(request.user, action=self.edit_action)
            if tenant_id is not None:
                initial["tenant"] = tenant_id
        return initial

    def save_form(self, request: HttpRequest, form, change: bool):
        obj = super().save_form(request, form, change)
        # Defence in depth: whatever the form allowed, never write into a tenant where
        # the user lacks the right.
        tenant_id = getattr(obj, "tenant_id", None)
        if tenant_id is not None and not tenancy.can(request.user, tenant_id, action=self.edit_action):
            raise PermissionDenied
        return obj

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        # Rows added through a TenantScopedInline belong to the parent's tenant.
        tenant_id = getattr(form.instance, "tenant_id", None)
        if tenant_id is not None and _is_tenant_owned(formset.model):
            for inline_form in formset.forms:
                if inline_form.instance.tenant_id is None:
                    inline_form.instance.tenant_id = tenant_id
        super().save_formset(request, form, formset, change)


class TenantScopedInline(_ScopedFormFieldsMixin, admin.options.InlineModelAdmin):
    """Base of inlines of tenant-owned rows (use with admin.TabularInline/StackedInline
    as `class X(TenantScopedInline, admin.TabularInline)`). Rights follow the parent
    object's tenant, like the parent admin's. The rows' tenant is the parent's: it is not
    a form field."""

    exclude = ["tenant"]

    def get_queryset(self, request: HttpRequest):
        return tenancy.scope(super().get_queryset(request), request.user)

    @staticmethod
    def _tenant_id(obj: Any) -> int | None:
        return getattr(obj, "tenant_id", None) if obj is not None else None

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, self._tenant_id(obj), action="view")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, self._tenant_id(obj), action=self.edit_action)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, self._tenant_id(obj), action=self.edit_action)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, self._tenant_id(obj), action=self.edit_action)
