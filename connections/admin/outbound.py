"""Admin of outbound connections: settings, the checklist, connectivity test, test mail and
the outbox summary. The outbox's own messages are in admin/outbox.py. All work is done by
connections.services.outbound."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from ..errors import TenantMailError
from ..models import OutboundConnection, OutboxMessage, OutboxStatus
from ..services.outbound import addresses, dispatch, enqueue, queries
from .base import TenantScopedAdmin
from .checklist import SetupChecklistAdminMixin
from .disclosure import OUTBOUND_RULES, DisclosureFormMixin
from .references import CredentialReferenceAdminMixin
from .connectivity import ConnectivityTestAdminMixin
from .proxies import PROXY_FIELDSET

STATUS_COLOURS = {
    OutboxStatus.QUEUED: "#205493", OutboxStatus.SENDING: "#b36b00", OutboxStatus.SENT: "#417505",
    OutboxStatus.FAILED: "#ba2121", OutboxStatus.CANCELLED: "#666666", OutboxStatus.UNCERTAIN: "#8a4baf",
}
SUMMARY_STATUSES = (OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.UNCERTAIN, OutboxStatus.FAILED)


# --- outbound connections ----------------------------------------------------------------

class OutboundConnectionForm(DisclosureFormMixin, forms.ModelForm):
    disclosure_rules = OUTBOUND_RULES

    class Meta:
        model = OutboundConnection
        fields = "__all__"

    def _address(self, name: str, *, required: bool) -> str:
        value = (self.cleaned_data.get(name) or "").strip()
        if not value:
            if required:
                raise forms.ValidationError("Enter the From address used when a message names none.")
            return ""
        try:
            addresses.parse_address(value, field=self.fields[name].label or name)
        except TenantMailError as exc:
            raise forms.ValidationError(str(exc)) from None
        return value

    def clean_default_from(self) -> str:
        return self._address("default_from", required=True)

    def clean_default_reply_to(self) -> str:
        return self._address("default_reply_to", required=False)

    def _addresses(self, name: str) -> str:
        value = (self.cleaned_data.get(name) or "").strip()
        try:
            for address in addresses.split_addresses([value]):
                addresses.parse_address(address, field=self.fields[name].label or name)
        except TenantMailError as exc:
            raise forms.ValidationError(str(exc)) from None
        return value

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Receiver attributes are optional on the form (a form without them, e.g. from an
        # older page or a script, keeps the defaults: UTF-8, automatic encoding).
        for name in ("body_charset", "transfer_encoding"):
            if name in self.fields:
                self.fields[name].required = False

    def clean_body_charset(self) -> str:
        return self.cleaned_data.get("body_charset") or OutboundConnection._meta.get_field("body_charset").default

    def clean_transfer_encoding(self) -> str:
        return (self.cleaned_data.get("transfer_encoding")
                or OutboundConnection._meta.get_field("transfer_encoding").default)

    def clean_default_to(self) -> str:
        return self._addresses("default_to")

    def clean_default_cc(self) -> str:
        return self._addresses("default_cc")

    def clean_default_bcc(self) -> str:
        return self._addresses("default_bcc")


class SendTestMailForm(forms.Form):
    recipient = forms.CharField(
        max_length=998, help_text="The test message goes to this address through each selected connection."
    )

    def clean_recipient(self) -> str:
        value = self.cleaned_data["recipient"].strip()
        try:
            addresses.parse_address(value, field="Recipient")
        except TenantMailError as exc:
            raise forms.ValidationError(str(exc)) from None
        return value


@admin.register(OutboundConnection)
class OutboundConnectionAdmin(CredentialReferenceAdminMixin, ConnectivityTestAdminMixin, SetupChecklistAdminMixin,
                              TenantScopedAdmin):
    form = OutboundConnectionForm
    change_form_template = "admin/connections/outboundconnection/change_form.html"
    list_display = ["name", "tenant", "host", "port", "protection", "authentication", "enabled",
                    "outbox_summary", "readiness"]
    list_filter = ["enabled", "tenant", "protection", "authentication"]
    search_fields = ["name", "host", "default_from", "tenant__name", "tenant__slug"]
    readonly_fields = ["smtp_max_size", "smtp_max_size_seen_at", "outbox_counts"]
    actions = ["send_test_mail", "send_due_now"]
    fieldsets = [
        (None, {"fields": ["tenant", "name", "enabled"]}),
        ("Server", {"fields": ["host", "port", "protection", "timeout", "verify_certificate", "trusted_ca"]}),
        ("Authentication", {"fields": ["authentication", "credential_name", "sasl_mechanism",
                                        "allow_plain_without_tls"]}),
        PROXY_FIELDSET,
        ("Sending", {"fields": ["default_from", "default_reply_to", "max_per_session", "rate_limit_per_minute",
                                "resend_uncertain", "smtp_max_size", "smtp_max_size_seen_at"]}),
        ("Receiver attributes (defaults and body)", {
            "fields": ["default_to", "default_cc", "default_bcc", "default_subject", "body_type", "body_charset",
                       "transfer_encoding"], "classes": ["collapse"]}),
        ("Outbox", {"fields": ["outbox_counts"]}),
    ]

    def get_queryset(self, request: HttpRequest):
        qs = super().get_queryset(request).select_related("tenant")
        # The list's outbox column: three small index-backed counts per row, in the same query.
        for status in SUMMARY_STATUSES:
            count = (OutboxMessage.objects.filter(connection=OuterRef("pk"), status=status)
                     .order_by().values("connection").annotate(n=Count("pk")).values("n"))
            qs = qs.annotate(**{f"outbox_{status}": Coalesce(Subquery(count), 0)})
        # The "last error" column: the newest failed message's error (connection+status index).
        failed = (OutboxMessage.objects.filter(connection=OuterRef("pk"), status=OutboxStatus.FAILED)
                  .order_by("-id").values("last_error")[:1])
        return qs.annotate(last_outbox_error=Subquery(failed))

    def _outbox_url(self, obj: OutboundConnection, **params: str) -> str:
        return reverse("admin:connections_outboxmessage_changelist") + "?" + urlencode(
            {"connection__id__exact": obj.pk, **params}
        )

    @admin.display(description="outbox")
    def outbox_summary(self, obj: OutboundConnection) -> str:
        counts = {s: getattr(obj, f"outbox_{s}", 0) for s in SUMMARY_STATUSES}
        parts = [(self._outbox_url(obj, status__exact=s), STATUS_COLOURS[s], counts[s], s)
                 for s in SUMMARY_STATUSES if counts.get(s)]
        if not parts:
            return "–"
        return format_html_join(" ", '<a href="{}" style="color:{}">{} {}</a>', parts)

    @admin.display(description="messages by status")
    def outbox_counts(self, obj: OutboundConnection) -> str:
        if obj is None or obj.pk is None:
            return "–"
        counts = queries.counts_by_status(connection_id=obj.pk)
        rows = [(self._outbox_url(obj, status__exact=s.value), s.label, counts.get(s.value, 0))
                for s in OutboxStatus]
        return format_html(
            "{} · <a href=\"{}\">all messages</a>",
            format_html_join(" · ", '<a href="{}">{}: {}</a>', rows),
            self._outbox_url(obj),
        )

    def _queue_test_mail(self, request: HttpRequest, connections, recipient: str) -> None:
        for connection in connections:
            if not connection.enabled or not connection.tenant.active:
                # It would wait in the outbox and tell the operator nothing about the server.
                self.message_user(
                    request,
                    f"Test mail not queued on '{connection.name}': the connection is "
                    + ("disabled" if not connection.enabled else "of an inactive tenant")
                    + "; enable it first.",
                    messages.WARNING,
                )
                continue
            try:
                message = enqueue.send_test_mail(connection_id=connection.pk, to=recipient)
            except TenantMailError as exc:
                self.message_user(request, f"Test mail not queued on '{connection.name}': {exc}",
                                  messages.ERROR)
                continue
            url = reverse("admin:connections_outboxmessage_change", args=[message.pk])
            self.message_user(
                request,
                format_html('Test mail to {} queued on \'{}\' as <a href="{}">#{}</a>.',
                            recipient, connection.name, url, message.pk),
                messages.SUCCESS,
            )

    def _test_mail_page(self, request: HttpRequest, form, connections, *, single: bool) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Send test mail",
            "opts": self.model._meta,
            "form": form,
            "connections": connections,
            "single": single,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        }
        return TemplateResponse(request, "admin/connections/outboundconnection/send_test_mail.html", context)

    @admin.action(description="Send test mail", permissions=["run"])
    def send_test_mail(self, request: HttpRequest, queryset):
        form = SendTestMailForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            self._queue_test_mail(request, queryset.select_related("tenant"), form.cleaned_data["recipient"])
            return None
        return self._test_mail_page(request, form, queryset, single=False)

    def send_test_mail_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's "Send test mail" button: the same form for this one connection."""
        self._require_visible(request, object_id)
        obj = self.get_queryset(request).get(pk=unquote(object_id))
        if not self.has_run_permission(request, obj):
            raise PermissionDenied
        form = SendTestMailForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            self._queue_test_mail(request, [obj], form.cleaned_data["recipient"])
            return HttpResponseRedirect(reverse("admin:connections_outboundconnection_change", args=[obj.pk]))
        return self._test_mail_page(request, form, [obj], single=True)

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path("<path:object_id>/send-test-mail/", self.admin_site.admin_view(self.send_test_mail_view),
                 name="%s_%s_send_test_mail" % info),
            *super().get_urls(),
        ]

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False, change: bool = False,
                           form_url: str = "", obj: Any = None):
        can_run = obj is not None and obj.pk is not None and self.has_run_permission(request, obj)
        context["send_test_mail_url"] = (
            reverse("admin:connections_outboundconnection_send_test_mail", args=[obj.pk]) if can_run else "")
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.action(description="Send due messages now", permissions=["run"])
    def send_due_now(self, request: HttpRequest, queryset):
        count = 0
        for connection in queryset.filter(enabled=True):
            dispatch.kick(connection_id=connection.pk)
            count += 1
        self.message_user(request, f"Asked the workers to send the due messages of {count} connection(s).")


# --- outbox messages ---------------------------------------------------------------------
