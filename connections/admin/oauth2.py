"""Admin of the OAuth2 artifact kinds: the User Credentials lifecycle (write-only secret,
deploy, versions, used by, safe delete) plus the provider settings, the token state, and for
Authorization Code artifacts the Authorize button and the callback URL to register."""
from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings as dj_settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from ..errors import TenantMailError
from ..models import CredentialKind, OAuth2AuthorizationCode, OAuth2ClientCredentials
from ..services.oauth2 import authorize, providers, tokens
from .credentials import UserCredentialAdmin, UserCredentialForm

SETTING_FIELDS = {
    CredentialKind.OAUTH2_CLIENT_CREDENTIALS: ["token_url", "client_id", "scope"],
    CredentialKind.OAUTH2_AUTHORIZATION_CODE: ["provider", "directory", "issuer", "authorization_url", "token_url",
                                               "client_id", "scope"],
}
HELP = {
    "token_url": "https:// (http:// only to a loopback host). Microsoft: https://login.microsoftonline.com/<directory>/oauth2/v2.0/token",
    "client_id": "The application (client) id of the app registration.",
    "scope": "Microsoft app-only: https://outlook.office365.com/.default; Google: https://mail.google.com/",
    "provider": "microsoft (with its directory), google, or generic (issuer, or authorization and token URLs).",
    "directory": "Microsoft: the directory (tenant) id or domain.",
    "issuer": "Generic: the issuer whose /.well-known/openid-configuration names the endpoints.",
    "authorization_url": "Generic without issuer: the authorization endpoint.",
}


def callback_url(request: HttpRequest) -> str:
    base = getattr(dj_settings, "TENANTMAIL_BASE_URL", "") or request.build_absolute_uri("/")
    return authorize.callback_url(base)


class OAuth2Form(UserCredentialForm):
    kind = CredentialKind.OAUTH2_CLIENT_CREDENTIALS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.oauth2 or {}
        for key in SETTING_FIELDS[self.kind]:
            if key == "provider":
                field = forms.ChoiceField(choices=[(p, p) for p in providers.PROVIDERS], initial="generic")
            else:
                field = forms.CharField(required=key == "client_id", max_length=500, help_text=HELP.get(key, ""))
            field.label = key.replace("_", " ")
            field.initial = current.get(key, field.initial)
            self.fields[key] = field
        self.fields["username"].label = "Mailbox user"
        self.fields["username"].help_text = "The mailbox address: the SASL identity the token logs in as."
        self.fields["new_password"].label = "Client secret" if self.instance.pk is None else "New client secret"
        self.fields["new_password_confirmation"].label = "Client secret confirmation"
        self.fields["new_password"].help_text = "Write-only: never shown again." + (
            " Leave blank to keep the stored one." if self.instance.pk else "")
        for name in ("new_password", "new_password_confirmation"):
            self.fields[name].error_messages["required"] = "Enter the client secret of the app registration."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "new_password" in self.errors and self.instance.pk is None:
            self.errors["new_password"] = self.error_class(["Enter the client secret of the app registration."])
        values = {k: (data.get(k) or "").strip() for k in SETTING_FIELDS[self.kind] if (data.get(k) or "").strip()}
        for key, message in providers.settings_problems(self.kind, values):
            if key in self.fields and key not in self.errors:
                self.add_error(key, message)
        self.instance.oauth2 = values
        return data


class AuthorizationCodeForm(OAuth2Form):
    kind = CredentialKind.OAUTH2_AUTHORIZATION_CODE


class OAuth2AdminBase(UserCredentialAdmin):
    change_form_template = "admin/connections/usercredential/change_form.html"
    delete_confirmation_template = "admin/connections/usercredential/delete_confirmation.html"
    object_history_template = "admin/connections/usercredential/object_history.html"

    def get_list_display(self, request: HttpRequest):
        return [f if f != "password_masked" else "secret_masked" for f in super().get_list_display(request)]

    @admin.display(description="client secret")
    def secret_masked(self, obj) -> str:
        return self.password_masked(obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The provider fields are added by the form itself: the model form takes its Meta fields.
        kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        main = [f if f != "password_display" else "secret_display" for f in fieldsets[0][1]["fields"]]
        main[main.index("username") + 1:main.index("username") + 1] = SETTING_FIELDS[self.kind]
        fieldsets = [(None, {"fields": main}), *fieldsets[1:]]
        if obj is not None:
            fieldsets.insert(2, ("Token", {"fields": ["token_display"]}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [*super().get_readonly_fields(request, obj), "secret_display", "token_display"]

    @admin.display(description="stored client secret")
    def secret_display(self, obj) -> str:
        return self.password_display(obj)

    @admin.display(description="access token")
    def token_display(self, obj) -> str:
        text, last_error = tokens.describe(credential_id=obj.pk)
        if last_error:
            return format_html("{}<br><span style='color:#ba2121'>Last error: {}</span>", text, last_error)
        return text


@admin.register(OAuth2ClientCredentials)
class OAuth2ClientCredentialsAdmin(OAuth2AdminBase):
    form = OAuth2Form
    kind = CredentialKind.OAUTH2_CLIENT_CREDENTIALS


@admin.register(OAuth2AuthorizationCode)
class OAuth2AuthorizationCodeAdmin(OAuth2AdminBase):
    form = AuthorizationCodeForm
    kind = CredentialKind.OAUTH2_AUTHORIZATION_CODE
    change_form_template = "admin/connections/oauth2authorizationcode/change_form.html"

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            extra_context["can_authorize"] = self.has_run_permission(request, obj) and obj.is_deployed
            extra_context["authorize_url"] = reverse(f"{self.admin_site.name}:connections_oauth2authorizationcode_authorize",
                                                     args=[obj.pk])
            extra_context["callback_url"] = callback_url(request)
            extra_context["authorize_label"] = "Re-authorize" if obj.refresh_token or obj.status == "error" else "Authorize"
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path("<path:object_id>/authorize/", self.admin_site.admin_view(self.authorize_view),
                 name="connections_oauth2authorizationcode_authorize"),
            *super().get_urls(),
        ]

    def authorize_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj, refused = self._object_to_run(request, object_id)
        if refused is not None:
            return refused
        try:
            url = authorize.start(credential_id=obj.pk, redirect_uri=callback_url(request), user=request.user)
        except TenantMailError as exc:
            self.message_user(request, f"Cannot authorize: {exc}", messages.ERROR)
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:connections_oauth2authorizationcode_change",
                                                args=[obj.pk]))
        # Not a redirect: Chromium applies the page's CSP form-action to a form's redirects, and
        # the admin allows forms to post to this site only. A page that navigates on is allowed.
        return TemplateResponse(request, "admin/connections/oauth2authorizationcode/continue_to_provider.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "object": obj, "authorize_url": url,
            "title": f"Authorize '{obj.name}'",
        })
