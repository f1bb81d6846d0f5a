"""Admin of the message templates (one set per tenant): subject and bodies as Django templates,
rendered once when a message is queued (connections/services/outbound/templates.py)."""
from __future__ import annotations

from django import forms
from django.contrib import admin

from ..errors import TenantMailError
from ..models import OutboxTemplate
from ..services.outbound import templates
from .base import TenantScopedAdmin


class OutboxTemplateForm(forms.ModelForm):
    class Meta:
        model = OutboxTemplate
        fields = "__all__"

    def clean(self):
        data = super().clean()
        probe = OutboxTemplate(name=data.get("name") or "template", subject=data.get("subject") or "",
                               text_body=data.get("text_body") or "", html_body=data.get("html_body") or "")
        try:
            templates.check(probe)
        except TenantMailError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(OutboxTemplate)
class OutboxTemplateAdmin(TenantScopedAdmin):
    form = OutboxTemplateForm
    list_display = ["name", "tenant", "subject", "updated_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "subject"]
