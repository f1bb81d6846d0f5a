"""Credential Name offered from the tenant's User Credentials artifacts, and a warning when a
saved connection is Blocked (issue 20: references that cannot dangle).

The name stays the reference (typed, as in SAP): the input suggests the artifacts of the
connection's tenant (on the add page: of every tenant the user may change), with their state,
through an HTML datalist, which works without JavaScript.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from ..models import Readiness, UserCredential
from ..services.setup import checklist
from ..services.access import tenancy


class CredentialNameInput(forms.TextInput):
    """A text input with a <datalist> of (name, label) suggestions."""

    def __init__(self, options: list[tuple[str, str]], attrs: dict | None = None) -> None:
        super().__init__(attrs)
        self.options = options

    def render(self, name, value, attrs=None, renderer=None):
        list_id = f"{(attrs or {}).get('id') or 'id_' + name}_artifacts"
        html = super().render(name, value, {**(attrs or {}), "list": list_id, "autocomplete": "off"}, renderer)
        return format_html('{}<datalist id="{}" class="tm-credential-names">{}</datalist>', html, list_id,
                           format_html_join("", '<option value="{}" label="{}"></option>', self.options))


def artifact_options(*, user: Any, tenant_id: int | None) -> list[tuple[str, str]]:
    """(name, "name — user, state [tenant]") of the artifacts the field may refer to."""
    qs = UserCredential.objects.select_related("tenant").order_by("tenant__name", "name")
    qs = qs.filter(tenant_id=tenant_id) if tenant_id else tenancy.scope(qs, user, action="change")
    out = []
    for cred in qs[:500]:
        state = ("not deployed yet" if cred.version == 0
                 else "changes not deployed" if cred.has_undeployed_changes else f"deployed v{cred.version}")
        where = "" if tenant_id else f" [{cred.tenant.name}]"
        out.append((cred.name, f"{cred.name} — {cred.username}, {state}{where}"))
    return out


class CredentialReferenceAdminMixin:
    """For the connection admins: the datalist on Credential Name, the Blocked warning on save."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change, **kwargs)  # type: ignore[misc]
        field = form.base_fields.get("credential_name")
        if field is not None and isinstance(field.widget, forms.TextInput):
            options = artifact_options(user=request.user, tenant_id=getattr(obj, "tenant_id", None))
            field.widget = CredentialNameInput(options, attrs=field.widget.attrs)
            field.help_text = (field.help_text + " " if field.help_text else "") + (
                "The name of a User Credentials artifact of the connection's tenant (suggested as you type).")
        return form

    def save_model(self, request: HttpRequest, obj: Any, form, change: bool) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        evaluation = checklist.evaluation(connection=obj)
        if evaluation.readiness == Readiness.BLOCKED:
            why = "; ".join(f"{i.label}: {i.detail}" for i in evaluation.problems if i.state == checklist.FAIL)
            messages.warning(request, f"Saved, but '{obj.name}' is Blocked and will not work until this is fixed: "
                                      f"{why}")
