"""The guided "Add mailbox" page of the admin (issue 20, item 5): address and password →
proposed server settings (all editable) → connectivity test → the artifact deployed and the
inbound and/or outbound connection created in one go. Business rules: services/setup."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from ..errors import TenantMailError
from ..models import Authentication, InboundConnection, OutboundConnection, Protection, UserCredential
from ..services.access import tenancy
from ..services.setup import mailbox

TEMPLATE = "admin/connections/add_mailbox.html"
PROTECTIONS = [(p.value, p.label) for p in Protection]
AUTHS = [(a.value, a.label) for a in Authentication]


class AddressForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=None)
    email = forms.EmailField(label="E-mail address")
    username = forms.CharField(label="User name", required=False,
                               help_text="Leave empty: the one the provider uses (usually the address).")
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), max_length=255)

    def __init__(self, *args: Any, tenants=None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tenant"].queryset = tenants
        if tenants is not None and tenants.count() == 1:
            self.fields["tenant"].initial = tenants.first().pk


class SettingsForm(forms.Form):
    credential = forms.IntegerField(widget=forms.HiddenInput)
    username = forms.CharField(label="User name")
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), max_length=255, required=False,
                               help_text="Leave empty to keep the password entered before; type it to change it.")
    inbound = forms.BooleanField(label="Inbound: TenantMail polls this mailbox", required=False)
    in_name = forms.CharField(label="Inbound connection name", required=False)
    in_protocol = forms.ChoiceField(label="Protocol", choices=[("imap", "IMAP"), ("pop3", "POP3")])
    in_host = forms.CharField(label="Server", required=False)
    in_port = forms.IntegerField(label="Port", required=False, min_value=1, max_value=65535)
    in_protection = forms.ChoiceField(label="Protection", choices=PROTECTIONS)
    outbound = forms.BooleanField(label="Outbound: TenantMail sends with this mailbox", required=False)
    out_name = forms.CharField(label="Outbound connection name", required=False)
    out_host = forms.CharField(label="Server", required=False)
    out_port = forms.IntegerField(label="Port", required=False, min_value=1, max_value=65535)
    out_protection = forms.ChoiceField(label="Protection", choices=PROTECTIONS)
    out_from = forms.CharField(label="Default From", required=False)
    authentication = forms.ChoiceField(choices=[a for a in AUTHS if a[0] != "none"])
    trusted_ca = forms.CharField(label="Trusted CA (PEM)", required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                 help_text="Only for a server whose certificate no public CA signed.")

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("inbound") and not cleaned.get("outbound"):
            raise forms.ValidationError("Choose inbound, outbound or both.")
        for side in ("in", "out"):
            if cleaned.get("inbound" if side == "in" else "outbound"):
                for key in ("name", "host"):
                    if not cleaned.get(f"{side}_{key}"):
                        self.add_error(f"{side}_{key}", "Required.")
        return cleaned


def _initial(proposal: mailbox.Proposal, credential: UserCredential, email: str) -> dict:
    i, o = proposal.inbound, proposal.outbound
    local = credential.name
    return {
        "credential": credential.pk, "username": credential.username,
        "inbound": i is not None, "in_name": f"{local}-in", "in_protocol": i.protocol if i else "imap",
        "in_host": i.host if i else "", "in_port": i.port if i else None,
        "in_protection": i.protection if i else "ssl_tls",
        "outbound": o is not None, "out_name": f"{local}-out", "out_host": o.host if o else "",
        "out_port": o.port if o else None, "out_protection": o.protection if o else "starttls_mandatory",
        "out_from": email, "authentication": (i or o).authentication if (i or o) else "plain",
    }


class AddMailboxAdminMixin:
    """Adds add-mailbox/ (name: connections_add_mailbox) to the inbound connection admin."""

    def get_urls(self):
        return [path("add-mailbox/", self.admin_site.admin_view(self.add_mailbox_view),  # type: ignore[attr-defined]
                     name="connections_add_mailbox"), *super().get_urls()]  # type: ignore[misc]

    @staticmethod
    def _tenants(request: HttpRequest):
        return tenancy.tenants(request.user, action="change").order_by("name")

    @method_decorator(sensitive_post_parameters("password"))
    def add_mailbox_view(self, request: HttpRequest) -> HttpResponse:
        tenants = self._tenants(request)
        if not request.user.is_staff or not tenants.exists():
            raise PermissionDenied
        context: dict[str, Any] = {**self.admin_site.each_context(request),  # type: ignore[attr-defined]
                                   "opts": self.model._meta, "title": "Add mailbox"}  # type: ignore[attr-defined]
        step = request.POST.get("step") if request.method == "POST" else None
        if step == "find":
            form = AddressForm(request.POST, tenants=tenants)
            if form.is_valid():
                return self._propose(request, context, form)
        elif step == "create":
            return self._create(request, context)
        else:
            form = AddressForm(tenants=tenants)
        return TemplateResponse(request, TEMPLATE, {**context, "step": "address", "form": form})

    def _propose(self, request: HttpRequest, context: dict, form: AddressForm) -> HttpResponse:
        data = form.cleaned_data
        try:
            proposal = mailbox.propose(email=data["email"])
            server = proposal.inbound or proposal.outbound
            username = data["username"] or mailbox.username_for(server, data["email"])
            credential = mailbox.store_password(
                tenant=data["tenant"], name=mailbox.artifact_name(tenant=data["tenant"], email=data["email"]),
                username=username, password=data["password"])
        except TenantMailError as exc:
            form.add_error(None, str(exc))
            return TemplateResponse(request, TEMPLATE, {**context, "step": "address", "form": form})
        settings_form = SettingsForm(initial=_initial(proposal, credential, data["email"]))
        return TemplateResponse(request, TEMPLATE, {**context, "step": "settings", "form": settings_form,
                                                    "proposal": proposal, "credential": credential})

    def _create(self, request: HttpRequest, context: dict) -> HttpResponse:
        form = SettingsForm(request.POST)
        credential = None
        if form.is_valid():
            credential = UserCredential.objects.filter(
                pk=form.cleaned_data["credential"], tenant__in=self._tenants(request), version=0).first()
            if credential is None:
                form.add_error(None, "The mailbox's password is no longer stored here; start again.")
        results = {}
        if form.is_valid() and credential is not None:
            plan = self._plan(form.cleaned_data, credential)
            try:
                for _, conn in plan.connections:
                    conn.full_clean(exclude=["credential_name"])
            except DjangoValidationError as exc:
                for message in exc.messages:
                    form.add_error(None, message)
            else:
                if credential.username != form.cleaned_data["username"] or form.cleaned_data["password"]:
                    credential.username = form.cleaned_data["username"]
                    credential = mailbox.credential_service.save_artifact(
                        credential=credential, password=form.cleaned_data["password"] or None)
                    plan.credential = credential
                results = mailbox.test(plan=plan)
                if all(r.ok for r in results.values()):
                    mailbox.create(plan=plan, user=request.user)
                    names = ", ".join(f"{k} connection '{c.name}'" for k, c in plan.connections)
                    messages.success(request, f"Created {names}, deployed '{credential.name}' as version 1; "
                                              "the connectivity test passed.")
                    first = plan.inbound or plan.outbound
                    return HttpResponseRedirect(reverse(
                        f"admin:connections_{first._meta.model_name}_change", args=[first.pk]) + "#setup-checklist")
        return TemplateResponse(request, TEMPLATE, {**context, "step": "settings", "form": form,
                                                    "credential": credential, "results": results})

    @staticmethod
    def _plan(data: dict, credential: UserCredential) -> mailbox.Plan:
        common = {"tenant": credential.tenant, "authentication": data["authentication"],
                  "trusted_ca": data["trusted_ca"] or "", "credential_name": credential.name}
        inbound = InboundConnection(
            name=data["in_name"], protocol=data["in_protocol"], host=data["in_host"].strip(),
            port=data["in_port"], protection=data["in_protection"],
            post_processing="keep" if data["in_protocol"] == "pop3" else "mark_read", **common,
        ) if data["inbound"] else None
        outbound = OutboundConnection(
            name=data["out_name"], host=data["out_host"].strip(), port=data["out_port"],
            protection=data["out_protection"], default_from=data["out_from"] or credential.username, **common,
        ) if data["outbound"] else None
        return mailbox.Plan(credential=credential, inbound=inbound, outbound=outbound)
