"""Admin of User Credentials artifacts: write-only password, deploy, used-by, safe delete.

The password is never rendered back into any page: the form has two empty password
inputs (new password and confirmation; left blank on change = unchanged), lists show a
mask, and a stored password that cannot be decrypted shows as an error, not a 500.
All work is done by connections.services.setup.credentials.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.template.response import TemplateResponse
from django.utils.formats import date_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters

from ..errors import TenantMailError
from ..models import CredentialKind, CredentialStatus, UserCredential
from ..models.credentials import MASK, PASSWORD_MAX_LENGTH
from ..services.setup import credentials as service
from ..services.access import tenancy
from .base import TenantScopedAdmin
from .predeploy import EnteredValuesTestAdminMixin

SECRET_POST_FIELDS = ("new_password", "new_password_confirmation")


class UserCredentialForm(forms.ModelForm):
    new_password = forms.CharField(
        label="Password", required=False, strip=False, max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: it is never shown again. On change, leave blank to keep the stored password.",
    )
    new_password_confirmation = forms.CharField(
        label="Password confirmation", required=False, strip=False, max_length=PASSWORD_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Enter the same password again.",
    )

    class Meta:
        model = UserCredential
        fields = ["tenant", "name", "description", "username"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["new_password"].label = "New password"
            self.fields["new_password"].help_text = (
                "Leave blank to keep the stored password. Write-only: it is never shown."
            )
            self.fields["new_password_confirmation"].label = "New password confirmation"
        else:
            self.fields["new_password"].help_text = "Write-only: it is never shown again."
            # Required when adding (marked so in the form; clean() words the message).
            for name in ("new_password", "new_password_confirmation"):
                self.fields[name].required = True
                self.fields[name].error_messages["required"] = (
                    "Enter the password of the mailbox owner." if name == "new_password"
                    else "Enter the same password again.")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        adding = self.instance.pk is None
        password = data.get("new_password") or ""
        confirmation = data.get("new_password_confirmation") or ""
        if adding and not password and "new_password" not in self.errors:
            self.add_error("new_password", "Enter the password of the mailbox owner.")
        if (password or confirmation) and password != confirmation:
            self.add_error("new_password_confirmation", "The two passwords do not match.")

        tenant = data.get("tenant") if "tenant" in self.fields else self.instance.tenant
        name = data.get("name")
        if tenant is not None and name:
            clash = UserCredential.objects.filter(tenant=tenant, name=name).exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("name", f"An artifact named '{name}' already exists in this tenant.")
        if not adding and name and name != self.initial.get("name"):
            # Renaming would silently break every connection that refers to the old name.
            old = UserCredential.objects.get(pk=self.instance.pk)
            usages = service.used_by(credential=old)
            if usages:
                self.add_error(
                    "name",
                    f"'{old.name}' is used by {', '.join(str(u) for u in usages)}; "
                    "change their Credential Name first or create a new artifact.",
                )
        return data


def _badge(text: str, colour: str) -> str:
    return format_html(
        '<span class="tm-badge" style="display:inline-block;padding:1px 7px;border-radius:9px;'
        'background:{};color:#fff;font-size:0.85em;white-space:nowrap">{}</span>',
        colour, text,
    )


@admin.register(UserCredential)
class UserCredentialAdmin(EnteredValuesTestAdminMixin, TenantScopedAdmin):
    form = UserCredentialForm
    list_display = [
        "name", "tenant", "username", "password_masked", "status_badge", "version", "deployed_at",
        "used_by_count",
    ]
    list_display_links = ["name"]
    list_filter = ["status", ("tenant", admin.RelatedOnlyFieldListFilter)]  # only own tenants
    search_fields = ["name", "username", "description"]
    list_select_related = ["tenant"]
    actions = ["deploy_selected"]
    readonly_fields = [
        "password_display", "status_badge", "version", "deployed_username", "deployed_at", "deployed_by_display",
        "deploy_history", "used_by_display", "password_env", "created_at", "updated_at",
    ]

    # --- forms and fieldsets

    def get_fieldsets(self, request: HttpRequest, obj: UserCredential | None = None):
        if obj is None:
            main = ["tenant", "name", "description", "username", *SECRET_POST_FIELDS]
            return [(None, {"fields": main})]
        main = ["tenant", "name", "description", "username", "password_display"]
        if self.has_change_permission(request, obj):
            main += list(SECRET_POST_FIELDS)
        return [
            (None, {"fields": main}),
            ("Deployment", {"fields": [
                "status_badge", "version", "deployed_username", "deployed_at", "deployed_by_display", "deploy_history",
            ]}),
            ("Used by", {"fields": ["used_by_display"]}),
            ("Record", {"fields": ["password_env", "created_at", "updated_at"], "classes": ["collapse"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: UserCredential | None = None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields.append("tenant")  # an artifact never moves between tenants
        return fields

    kind = CredentialKind.USER  # the OAuth2 kinds have their own pages (admin/oauth2.py)

    def get_queryset(self, request: HttpRequest):
        return service.with_usage_counts(qs=super().get_queryset(request).filter(kind=self.kind))

    def get_list_display(self, request: HttpRequest):
        fields = list(super().get_list_display(request))
        ids = tenancy.tenant_ids(request.user)
        if ids is not None and len(ids) == 1:
            fields.remove("tenant")  # one tenant: the column says nothing
        return fields

    def construct_change_message(self, request: HttpRequest, form, formsets, add: bool = False):
        # History says "Changed Password" (never a value), not the two input boxes.
        message = super().construct_change_message(request, form, formsets, add)
        for entry in message:
            changed = entry.get("changed", {}).get("fields")
            if changed:
                labels = {str(form.fields[n].label) for n in SECRET_POST_FIELDS}
                kept = [f for f in changed if f not in labels]
                entry["changed"]["fields"] = kept + (["Password"] if len(kept) < len(changed) else [])
        return message

    def save_model(self, request: HttpRequest, obj: UserCredential, form, change: bool) -> None:
        obj.kind = self.kind
        service.save_artifact(credential=obj, password=form.cleaned_data.get("new_password") or None)

    @method_decorator(sensitive_post_parameters(*SECRET_POST_FIELDS))
    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        return super().add_view(request, form_url, extra_context)

    @method_decorator(sensitive_post_parameters(*SECRET_POST_FIELDS))
    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            extra_context["can_deploy"] = self.has_run_permission(request, obj)
            extra_context["deploy_url"] = reverse(
                f"{self.admin_site.name}:connections_{self.opts.model_name}_deploy", args=[obj.pk]
            )
            extra_context["state_notice"] = self._state_notice(obj)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context=None):
        # Every deploy, also those without a user (apply_config), which Django's log cannot hold.
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            extra_context["deployments"] = list(obj.deployments.order_by("-version"))
        return super().history_view(request, object_id, extra_context)

    # --- displayed values (never a secret)

    @admin.display(description="deployed by")
    def deployed_by_display(self, obj: UserCredential) -> str:
        # The record of the deploy in force also names system deploys ("system (apply_config)").
        last = obj.deployments.filter(version=obj.version).first() if obj.pk and obj.version else None
        if last is not None:
            return last.actor
        return obj.deployed_by.get_username() if obj.deployed_by_id else "—"

    @admin.display(description="deploy history")
    def deploy_history(self, obj: UserCredential) -> str:
        rows = list(obj.deployments.order_by("-version")[:10]) if obj.pk else []
        if not rows:
            return "Never deployed."
        return format_html(
            "<ul style='margin:0;padding-left:1.2em'>{}</ul>",
            format_html_join(
                "", "<li>version {} — {} — {}</li>",
                ((d.version, date_format(timezone.localtime(d.deployed_at), "DATETIME_FORMAT"), d.actor) for d in rows),
            ),
        )

    @admin.display(description="password")
    def password_masked(self, obj: UserCredential) -> str:
        if obj.__dict__.get("password") is None:
            return "—"
        if service.is_undecryptable(obj.__dict__.get("password")):
            return _badge("cannot decrypt", "#ba2121")
        return MASK

    @admin.display(description="stored password")
    def password_display(self, obj: UserCredential) -> str:
        if obj.pk is None:
            return "—"
        problem = obj.decryption_problem()
        if problem:
            return format_html('{} <span style="color:#ba2121">{}</span>', _badge("Error", "#ba2121"), problem)
        return f"{MASK} (encrypted, write-only: never shown)"

    @admin.display(description="status")
    def status_badge(self, obj: UserCredential) -> str:
        problem = obj.decryption_problem()
        if problem or obj.status == CredentialStatus.ERROR:
            return _badge("Error", "#ba2121")
        parts = []
        if obj.status == CredentialStatus.DEPLOYED:
            parts.append(_badge(f"Deployed v{obj.version}", "#417505"))
        elif obj.status == CredentialStatus.AUTHORIZED:
            parts.append(_badge(f"Authorized v{obj.version}", "#417505"))
        elif obj.status == CredentialStatus.UNAUTHORIZED:
            parts.append(_badge(f"Unauthorized v{obj.version}", "#b36b00"))
        else:
            parts.append(_badge("Stored", "#666"))
        if obj.version == 0:
            parts.append(_badge("not deployed yet", "#b36b00"))
        elif obj.has_undeployed_changes:
            parts.append(_badge("changes not deployed", "#b36b00"))
        return format_html_join(" ", "{}", ((p,) for p in parts))

    @admin.display(description="used by", ordering="usage_count")
    def used_by_count(self, obj: UserCredential) -> int:
        if hasattr(obj, "usage_count"):
            return obj.usage_count
        return len(service.used_by(credential=obj))

    @admin.display(description="used by")
    def used_by_display(self, obj: UserCredential) -> str:
        usages = service.used_by(credential=obj)
        if not usages:
            return "No connection uses this artifact."
        return format_html(
            "<ul style='margin:0;padding-left:1.2em'>{}</ul>",
            format_html_join("", "<li>{}</li>", ((self._usage_link(u),) for u in usages)),
        )

    def _usage_link(self, usage: service.Usage) -> str:
        model_name = usage.connection._meta.model_name
        try:
            url = reverse(f"{self.admin_site.name}:connections_{model_name}_change", args=[usage.connection.pk])
        except NoReverseMatch:  # that admin is not registered
            return str(usage)
        return format_html('{} connection <a href="{}">{}</a>', usage.kind, url, usage.connection.name)

    def _state_notice(self, obj: UserCredential) -> str:
        problem = obj.decryption_problem()
        if problem:
            return format_html("{} {}", problem, service.KEY_HINT[0].upper() + service.KEY_HINT[1:] + ".")
        if obj.status == CredentialStatus.ERROR and obj.status_detail:
            return obj.status_detail
        if obj.version == 0:
            return "Not deployed yet: connections cannot use this artifact until it is deployed."
        if obj.has_undeployed_changes:
            return (
                f"Changes not deployed: connections still use deployed version {obj.version} "
                "until you deploy again."
            )
        return ""

    # --- deploy: action and button

    @admin.action(description="Deploy selected User Credentials artifacts", permissions=["run"])
    def deploy_selected(self, request: HttpRequest, queryset) -> None:
        deployed, failed = [], []
        for obj in queryset:
            if not self.has_run_permission(request, obj):
                failed.append(f"'{obj.name}': your role in its tenant does not allow deploying")
                continue
            try:
                cred = service.deploy(credential_id=obj.pk, user=request.user, source="admin")
            except TenantMailError as exc:
                failed.append(str(exc))
            else:
                deployed.append(f"'{cred.name}' (version {cred.version})")
        if deployed:
            self.message_user(request, f"Deployed {', '.join(deployed)}.", messages.SUCCESS)
        for failure in failed:
            self.message_user(request, f"Not deployed: {failure}", messages.ERROR)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/deploy/", self.admin_site.admin_view(self.deploy_view),
                 name="%s_%s_deploy" % info),
            *super().get_urls(),
        ]

    def _object_to_run(self, request: HttpRequest, object_id: str, *, methods: tuple[str, ...] = ("POST",)):
        """The artifact of a button (deploy, authorize), or the response refusing it."""
        if request.method not in methods:
            return None, HttpResponseNotAllowed(list(methods))
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such object.")
        if not self.has_run_permission(request, obj):
            raise PermissionDenied
        return obj, None

    def deploy_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the confirmation (the checklist's "Deploy" link lands here); POST: deploy, then
        back to `next` (the connection the operator came from) or the artifact."""
        obj, refused = self._object_to_run(request, object_id, methods=("GET", "POST"))
        if refused is not None:
            return refused
        change_url = reverse(f"{self.admin_site.name}:connections_{self.opts.model_name}_change", args=[obj.pk])
        back = request.POST.get("next") or request.GET.get("next") or ""
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
            back = ""
        if request.method == "GET":
            return TemplateResponse(request, "admin/connections/usercredential/deploy_confirmation.html", {
                **self.admin_site.each_context(request), "opts": self.opts, "object": obj,
                "title": f"Deploy '{obj.name}'", "next_version": obj.version + 1, "next": back,
                "used_by": [str(u) for u in service.used_by(credential=obj)], "cancel_url": back or change_url,
            })
        try:
            cred = service.deploy(credential_id=obj.pk, user=request.user, source="admin")
        except TenantMailError as exc:
            self.message_user(request, f"Not deployed: {exc}", messages.ERROR)
        else:
            self.message_user(
                request, f"Deployed '{cred.name}' as version {cred.version}.", messages.SUCCESS
            )
        return HttpResponseRedirect(back or change_url)

    # --- delete: refused while a connection uses the artifact

    def get_deleted_objects(self, objs, request: HttpRequest):
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        protected = list(protected)
        for obj in objs:
            for usage in service.used_by(credential=obj):
                protected.append(format_html("'{}' is used by {}", obj.name, self._usage_link(usage)))
        return deleted, model_count, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: UserCredential) -> None:
        service.delete(credential_id=obj.pk, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for obj in queryset:
            service.delete(credential_id=obj.pk, user=request.user)
