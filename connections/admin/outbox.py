"""Admin of the outbox: compose a message, each message's delivery record, requeue, cancel,
and the operator's choices for uncertain messages. All work is done by
connections.services.outbound."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from ..errors import TenantMailError
from ..models import OutboxAttachment, OutboxMessage, OutboxStatus
from ..services.access import tenancy
from ..services.common import dates
from ..services.outbound import actions, addresses, enqueue, recovery
from ..services.outbound.mime import AttachmentIn
from ..services.outbound.prepare import PreparedMessage, human_size, prepare
from .base import TenantScopedAdmin
from .outbound import STATUS_COLOURS



def _split_addresses(value: str) -> list[str]:
    lines = [line.strip() for line in (value or "").replace("\r", "\n").split("\n")]
    return addresses.split_addresses([line for line in lines if line])


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list:
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(item, initial) for item in data if item]
        return [single(data, initial)] if data else []


class ComposeForm(forms.ModelForm):
    """The add form: a message composed in the admin and queued through the service."""

    to = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False,
                         help_text="One address per line, or separated by commas.")
    cc = forms.CharField(label="Cc", widget=forms.Textarea(attrs={"rows": 1}), required=False)
    bcc = forms.CharField(label="Bcc", widget=forms.Textarea(attrs={"rows": 1}), required=False)
    reply_to = forms.CharField(label="Reply-To", required=False,
                               help_text="Empty: the connection's default Reply-To.")
    from_address = forms.CharField(label="From", required=False, max_length=998,
                                   help_text="Empty: the connection's default From.")
    attachments = MultipleFileField(required=False, help_text="Select one or more files.")

    class Meta:
        model = OutboxMessage
        fields = ["connection", "from_address", "to", "cc", "bcc", "reply_to", "subject", "text_body",
                  "html_body", "priority", "send_after"]
        widgets = {"subject": forms.TextInput(attrs={"size": 80})}
        labels = {"text_body": "Text", "html_body": "HTML"}

    prepared: PreparedMessage | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        connection = data.get("connection")
        if connection is None or self.errors:
            return data
        uploads = data.get("attachments") or []
        try:
            self.prepared = prepare(
                connection_id=connection.pk,
                to=_split_addresses(data.get("to", "")), cc=_split_addresses(data.get("cc", "")),
                bcc=_split_addresses(data.get("bcc", "")),
                reply_to=_split_addresses(data["reply_to"]) if data.get("reply_to") else None,
                from_address=data.get("from_address") or None,
                subject=data.get("subject") or "", text=data.get("text_body") or "",
                html=data.get("html_body") or "",
                attachments=[AttachmentIn(u.name, u.read(), u.content_type or "") for u in uploads],
                priority=data.get("priority") or 0, send_after=data.get("send_after"),
            )
        except TenantMailError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


class StaleFilter(admin.SimpleListFilter):
    title = "in flight"
    parameter_name = "flight"

    def lookups(self, request: HttpRequest, model_admin: Any):
        return [("stale", "Stale: worker presumed gone"), ("active", "Being sent now")]

    def queryset(self, request: HttpRequest, queryset):
        if self.value() == "stale":
            return queryset.filter(recovery.expired())
        if self.value() == "active":
            return queryset.filter(status=OutboxStatus.SENDING).exclude(recovery.expired())
        return queryset


class OutboxAttachmentInline(admin.TabularInline):
    model = OutboxAttachment
    # Read-only rows without Django's row title, which repeated the file name of the Name column.
    template = "admin/connections/outboxmessage/attachments_tabular.html"
    extra = 0
    fields = ["name", "content_type", "size"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_staff and tenancy.can(request.user, getattr(obj, "tenant_id", None), action="view")


DELIVERY_FIELDS = ["status_badge", "attempts", "next_attempt_at", "claimed_at", "progress", "lease_until", "sent_at",
                   "last_error",
                   "recipient_table", "delivery_log_table"]
MESSAGE_FIELDS = ["tenant", "connection", "from_address", "to_list", "cc_list", "bcc_list", "reply_to",
                  "subject", "message_id", "size_display", "priority", "send_after", "created_at", "source_link",
                  "retry_links"]


@admin.register(OutboxMessage)
class OutboxMessageAdmin(TenantScopedAdmin):
    edit_action = "run"  # composing a message is a send: operators may
    list_display = ["subject_display", "recipients", "connection", "tenant", "status_badge", "attempts",
                    "next_attempt_at", "sent_at", "created_at"]
    list_filter = ["status", StaleFilter, "connection", "tenant"]
    search_fields = ["subject", "message_id", "from_address", "envelope_from"]
    date_hierarchy = "created_at"
    actions = ["requeue", "cancel", "resend_uncertain", "mark_sent"]
    list_select_related = ["connection", "tenant"]
    list_per_page = 100
    inlines = [OutboxAttachmentInline]

    def get_queryset(self, request: HttpRequest):
        # Never load the wire bytes or bodies for lists.
        return super().get_queryset(request).defer("mime", "text_body", "html_body")

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        result, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if "@" in term and " " not in term:
            result = result | queryset.filter(Q(envelope_to__contains=[term]))
        return result, duplicates

    # --- permissions: messages are composed, never edited; deleting needs the admin role
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.status == OutboxStatus.SENDING:
            return False
        return request.user.is_staff and tenancy.can(request.user, self._obj_tenant_id(obj), action="change")

    # --- compose (add) and the read-only record (change)
    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        if obj is None:
            kwargs["form"] = ComposeForm
            kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return [
                (None, {"fields": ["connection", "from_address", "to", "cc", "bcc", "reply_to", "subject"]}),
                ("Body", {"fields": ["text_body", "html_body", "attachments"]}),
                ("Scheduling", {"fields": ["priority", "send_after"], "classes": ["collapse"]}),
            ]
        return [
            ("Delivery", {"fields": DELIVERY_FIELDS}),
            ("Message", {"fields": MESSAGE_FIELDS}),
            ("Body", {"fields": ["text_display", "html_display", "extra_headers"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return []
        return DELIVERY_FIELDS + MESSAGE_FIELDS + ["text_display", "html_display", "extra_headers"]

    def get_inlines(self, request: HttpRequest, obj: Any = None):
        # No empty attachments table on messages without attachments.
        return [OutboxAttachmentInline] if obj is not None and obj.attachments.exists() else []

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "connection" and field is not None:
            field.queryset = field.queryset.select_related("tenant").filter(enabled=True)
            field.label_from_instance = lambda c: f"{c.tenant.slug} / {c.name} ({c.host})"
        return field

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "connection" and field is not None:
            # Composing a message is no place to add, change or delete connections.
            for flag in ("can_add_related", "can_change_related", "can_delete_related", "can_view_related"):
                setattr(field.widget, flag, False)
        return field

    def save_form(self, request: HttpRequest, form, change: bool):
        if change:
            raise PermissionDenied  # the record is read-only
        prepared = form.prepared
        if prepared is None or not tenancy.can(request.user, prepared.connection.tenant_id, action="run"):
            raise PermissionDenied
        return enqueue.store(prepared)

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        pass  # stored by enqueue.store in save_form

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        pass

    def response_add(self, request: HttpRequest, obj, post_url_continue=None):
        self.message_user(request, f"Message #{obj.pk} queued on {obj.connection.name}.", messages.SUCCESS)
        return super().response_add(request, obj, post_url_continue)

    def get_urls(self):
        urls = super().get_urls()
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path("<path:object_id>/source/", self.admin_site.admin_view(self.source_view),
                 name="%s_%s_source" % info),
            *urls,
        ]

    def source_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The message exactly as it goes on the wire (message/rfc822, downloaded)."""
        self._require_visible(request, object_id)
        obj = self.get_queryset(request).defer(None).get(pk=object_id)
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        response = HttpResponse(bytes(obj.mime), content_type="message/rfc822")
        response["Content-Disposition"] = f'attachment; filename="outbox-{obj.pk}.eml"'
        response["X-Content-Type-Options"] = "nosniff"
        return response

    # --- actions
    @admin.action(description="Requeue selected (failed, cancelled, stale sending)", permissions=["run"])
    def requeue(self, request: HttpRequest, queryset) -> None:
        result = actions.requeue(message_ids=list(queryset.values_list("pk", flat=True)), user=request.user)
        self._report(request, result.changed, result.skipped, "requeued",
                     only="only failed, cancelled and stale sending messages can be requeued.")

    @admin.action(description="Cancel selected (queued, stale sending)", permissions=["run"])
    def cancel(self, request: HttpRequest, queryset) -> None:
        result = actions.cancel(message_ids=list(queryset.values_list("pk", flat=True)), user=request.user)
        self._report(request, result.changed, result.skipped, "cancelled",
                     only="only queued and stale sending messages can be cancelled.")

    @admin.action(description="Resend selected uncertain (same Message-ID; may deliver twice)", permissions=["run"])
    def resend_uncertain(self, request: HttpRequest, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        changed = actions.resend_uncertain(message_ids=ids, user=request.user)
        self._report(request, changed, len(ids) - changed, "queued to be sent again")

    @admin.action(description="Mark selected uncertain as sent", permissions=["run"])
    def mark_sent(self, request: HttpRequest, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        changed = actions.mark_sent(message_ids=ids, user=request.user)
        self._report(request, changed, len(ids) - changed, "marked sent")

    def _report(self, request: HttpRequest, changed: int, skipped: int, done: str,
                *, only: str = "only uncertain messages.") -> None:
        """An action's result: how many changed, and why the others were left as they are."""
        self.message_user(request, f"{changed} message(s) {done}.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} message(s) left as they are: {only}", messages.WARNING)

    # --- columns and read-only fields
    @admin.display(description="subject", ordering="subject")
    def subject_display(self, obj: OutboxMessage) -> str:
        return obj.subject or "(no subject)"

    @admin.display(description="recipients")
    def recipients(self, obj: OutboxMessage) -> str:
        rcpts = list(obj.envelope_to or [])
        return ", ".join(rcpts[:3]) + (f" +{len(rcpts) - 3}" if len(rcpts) > 3 else "")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: OutboxMessage) -> str:
        label = obj.get_status_display()
        if recovery.is_expired(obj):
            return format_html(
                '<strong style="color:#ba2121" title="claimed at {}; its worker is presumed gone. The next beat '
                'tick puts it back in the queue (or makes it uncertain if its data had started).">{} (stale)</strong>',
                dates.short(obj.claimed_at, seconds=True), label,
            )
        if obj.status == OutboxStatus.UNCERTAIN:
            return format_html(
                '<strong style="color:{}" title="lost after the data, before the server\'s reply: it may have been '
                'delivered. Resend it (same Message-ID) or mark it sent.">{} (may have been delivered)</strong>',
                STATUS_COLOURS[OutboxStatus.UNCERTAIN], label,
            )
        return format_html('<strong style="color:{}">{}</strong>', STATUS_COLOURS.get(obj.status, "#000"), label)

    @admin.display(description="To")
    def to_list(self, obj: OutboxMessage) -> str:
        return ", ".join(obj.to) or "–"

    @admin.display(description="Cc")
    def cc_list(self, obj: OutboxMessage) -> str:
        return ", ".join(obj.cc) or "–"

    @admin.display(description="Bcc")
    def bcc_list(self, obj: OutboxMessage) -> str:
        return ", ".join(obj.bcc) or "–"

    @admin.display(description="size")
    def size_display(self, obj: OutboxMessage) -> str:
        return human_size(obj.size)

    @admin.display(description="source")
    def source_link(self, obj: OutboxMessage) -> str:
        url = reverse("admin:connections_outboxmessage_source", args=[obj.pk])
        return format_html('<a href="{}">download the message as sent (.eml)</a>', url)

    @admin.display(description="follow-ups")
    def retry_links(self, obj: OutboxMessage) -> str:
        """Recipients refused temporarily are retried in follow-up messages (same Message-ID)."""
        links = []
        if obj.retry_of_id:
            url = reverse("admin:connections_outboxmessage_change", args=[obj.retry_of_id])
            links.append(format_html('retries recipients of <a href="{}">#{}</a>', url, obj.retry_of_id))
        for pk, status in obj.retries.values_list("pk", "status"):
            url = reverse("admin:connections_outboxmessage_change", args=[pk])
            links.append(format_html('follow-up <a href="{}">#{}</a> ({})', url, pk, status))
        return format_html_join(" · ", "{}", ((link,) for link in links)) if links else "–"

    @admin.display(description="text")
    def text_display(self, obj: OutboxMessage) -> str:
        return format_html('<pre style="white-space:pre-wrap;max-height:30em;overflow:auto">{}</pre>',
                           obj.text_body) if obj.text_body else "–"

    @admin.display(description="HTML (source)")
    def html_display(self, obj: OutboxMessage) -> str:
        # Shown as escaped source: rendering it would run the message's markup in the admin.
        return format_html('<pre style="white-space:pre-wrap;max-height:30em;overflow:auto">{}</pre>',
                           obj.html_body) if obj.html_body else "–"

    @admin.display(description="recipients")
    def recipient_table(self, obj: OutboxMessage) -> str:
        results = obj.recipient_results or {}
        sent = [e for e in (obj.delivery_log or []) if e.get("outcome") in ("sent", "partial")]
        accepted_by = f"sent {dates.short(sent[-1].get('at'))}, {sent[-1].get('detail', '')}" if sent else ""
        rows = []
        for address in obj.envelope_to or []:
            result = results.get(address)
            if result is None:
                rows.append((address, "–", "not sent yet" if obj.status in ("queued", "sending") else "–", "–", "–"))
            elif result.get("status") == "accepted":
                # What the server said: to RCPT TO, and its final reply to the data.
                rcpt = f"{result['rcpt_code']} {result.get('rcpt_text', '')}" if result.get("rcpt_code") else "–"
                final = f"{result['code']} {result.get('text', '')}" if result.get("code") else (
                    f"accepted (recorded before replies were kept): {accepted_by}" if accepted_by else "accepted")
                rows.append((address, "accepted", rcpt, final, result.get("queue_id") or "–"))
            else:
                rows.append((address, f"refused {result.get('code', '')}",
                             f"{result.get('code', '')} {result.get('text', '')}", "–", "–"))
        return format_html(
            "<table><thead><tr><th>address</th><th>result</th><th>reply to RCPT TO</th><th>final reply</th>"
            "<th>queue id</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description="attempts and events")
    def delivery_log_table(self, obj: OutboxMessage) -> str:
        log = obj.delivery_log or []
        if not log:
            return "–"
        rows = [(dates.short(e.get("at"), seconds=True, empty="–"), e.get("outcome", ""), e.get("code") or "–",
                 e.get("detail") or "–") for e in log]
        return format_html(
            "<table><thead><tr><th>at</th><th>outcome</th><th>code</th><th>detail</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def changeform_view(self, request: HttpRequest, object_id=None, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        if object_id is None:
            extra_context.setdefault("title", "Compose a message")
        return super().changeform_view(request, object_id, form_url, extra_context)
