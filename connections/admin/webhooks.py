"""Admin of webhooks (state, enable again), their delivery log (replay) and API tokens
(created here, shown once; revocable)."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from ..models import ApiScope, ApiToken, Webhook, WebhookDelivery
from ..services import webhooks
from ..services.access import api_tokens
from .base import TenantScopedAdmin


class WebhookForm(forms.ModelForm):
    url = forms.URLField(label="URL", max_length=2000, assume_scheme="https")
    new_secret = forms.CharField(
        label="Secret", required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Key of the X-TenantMail-Signature HMAC. Write-only; on change, leave blank to keep it.",
    )

    class Meta:
        model = Webhook
        fields = ["tenant", "connection", "url", "enabled"]

    def clean(self):
        data = super().clean()
        if not self.instance.pk and not data.get("new_secret"):
            self.add_error("new_secret", "Enter the secret the receiver checks signatures with.")
        tenant, connection = data.get("tenant"), data.get("connection")
        if tenant and connection and connection.tenant_id != tenant.pk:
            self.add_error("connection", "Choose a connection of the webhook's tenant.")
        return data


@admin.register(Webhook)
class WebhookAdmin(TenantScopedAdmin):
    form = WebhookForm
    list_display = ["__str__", "tenant", "enabled", "state", "consecutive_failures", "last_success_at", "log"]
    list_filter = ["state", "enabled", "tenant"]
    search_fields = ["url", "connection__name"]
    list_select_related = ["tenant", "connection"]
    readonly_fields = ["state", "state_detail", "disabled_at", "consecutive_failures", "last_success_at",
                       "secret_env", "log"]
    actions = ["enable_webhooks"]

    def get_fields(self, request: HttpRequest, obj: Any = None):
        return ["tenant", "connection", "url", "new_secret", "enabled", *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: Webhook, form, change: bool) -> None:
        if form.cleaned_data.get("new_secret"):
            obj.secret = form.cleaned_data["new_secret"]
        webhooks.save_webhook(webhook=obj)  # the form has checked what it refuses

    @admin.display(description="delivery log")
    def log(self, obj: Webhook) -> str:
        if not obj.pk:
            return "-"
        url = reverse("admin:connections_webhookdelivery_changelist") + f"?webhook__id__exact={obj.pk}"
        return format_html('<a href="{}">Deliveries</a>', url)

    @admin.action(description="Enable again (and send what waited)", permissions=["run"])
    def enable_webhooks(self, request: HttpRequest, queryset) -> None:
        count = webhooks.enable(webhook_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} webhook(s) enabled.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(TenantScopedAdmin):
    list_display = ["created_at", "webhook", "event", "object_id", "status", "attempts", "response_code",
                    "latency_ms", "next_attempt_at", "short_error", "uuid"]
    list_filter = ["status", "event", "tenant"]
    search_fields = ["=uuid", "=object_id"]
    list_select_related = ["webhook", "webhook__connection", "tenant"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["replay_deliveries"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="error")
    def short_error(self, obj: WebhookDelivery) -> str:
        return (obj.last_error or "")[:120]

    @admin.action(description="Replay (send again, same delivery id)", permissions=["run"])
    def replay_deliveries(self, request: HttpRequest, queryset) -> None:
        count = webhooks.replay(delivery_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} delivery(ies) queued again.")


class ApiTokenForm(forms.ModelForm):
    scope_choices = forms.MultipleChoiceField(label="Scopes", choices=ApiScope.choices,
                                              widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiToken
        fields = ["tenant", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "prefix"]
    actions = ["revoke_tokens"]

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ["tenant", "name", "scope_choices"]
        return ["tenant", "name", "prefix", "scopes", "created_at", "created_by", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        created = api_tokens.create_token(tenant=obj.tenant, name=obj.name,
                                          scopes=form.cleaned_data["scope_choices"], user=request.user)
        obj.__dict__.update({k: v for k, v in created.token.__dict__.items() if k != "_state"})
        obj._state.adding = False
        self.message_user(request, f"API token '{obj.name}' — copy it now, it is not shown again: {created.secret}",
                          messages.WARNING)

    @admin.action(description="Revoke selected tokens", permissions=["delete"])
    def revoke_tokens(self, request: HttpRequest, queryset) -> None:
        count = api_tokens.revoke(token_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} token(s) revoked.")
