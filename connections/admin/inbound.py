"""Admin of inbound connections, their poll history and the stored messages.

Thin: validation, scheduling and polling are in connections.services.inbound (checks,
schedule, dispatch, history), the settings warnings in connections.services.setup.warnings;
"Poll now" only queues the poll task.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from ..models import Attachment, InboundConnection, PollOutcome, PollRun, StoredMessage
from ..services.inbound import checks, dispatch, history, schedule
from ..services.setup.warnings import processing_warnings
from .base import TenantScopedAdmin
from .checklist import SetupChecklistAdminMixin
from .add_mailbox import AddMailboxAdminMixin
from .disclosure import INBOUND_RULES, DisclosureFormMixin, ImapStateFieldsetMixin
from .references import CredentialReferenceAdminMixin
from .connectivity import ConnectivityTestAdminMixin
from .erase import EraseMessagesAdminMixin
from .proxies import PROXY_FIELDSET, PushPanelMixin

OUTCOME_COLOURS = {
    PollOutcome.SUCCESS: "#417505", PollOutcome.PARTIAL: "#b36b00", PollOutcome.FAILED: "#ba2121",
    PollOutcome.LOCKED: "#666666", PollOutcome.RUNNING: "#205493",
}
SCHEDULE_FIELDS = ("enabled", "schedule_kind", "schedule_every", "schedule_weekdays", "schedule_start_hour",
                   "schedule_end_hour", "schedule_cron", "timezone")


def _outcome(value: str) -> str:
    return format_html('<b style="color:{}">{}</b>', OUTCOME_COLOURS.get(value, "#333"), PollOutcome(value).label)


class InboundConnectionForm(DisclosureFormMixin, forms.ModelForm):
    disclosure_rules = INBOUND_RULES

    class Meta:
        model = InboundConnection
        fields = "__all__"
        widgets = {
            "schedule_cron": forms.TextInput(attrs={"placeholder": "*/15 8-18 * * 1-5", "size": 30}),
            "schedule_weekdays": forms.TextInput(attrs={"placeholder": "0,1,2,3,4", "size": 20}),
        }

    def clean(self):
        cleaned = super().clean()
        probe = InboundConnection(**{
            f.name: cleaned.get(f.name, getattr(self.instance, f.name))
            for f in InboundConnection._meta.concrete_fields if f.name not in ("id", "tenant")
        })
        for field_name, message in checks.validation_errors(probe).items():
            if field_name in self.fields:
                self.add_error(field_name, message)
            else:
                self.add_error(None, message)
        return cleaned


@admin.register(InboundConnection)
class InboundConnectionAdmin(PushPanelMixin, AddMailboxAdminMixin, ImapStateFieldsetMixin, CredentialReferenceAdminMixin,
                             ConnectivityTestAdminMixin, SetupChecklistAdminMixin, TenantScopedAdmin):
    form = InboundConnectionForm
    change_form_template = "admin/connections/inboundconnection/change_form.html"
    list_display = ["name", "tenant", "protocol", "host", "folder", "enabled", "schedule_text", "next_run",
                    "last_poll", "poll_state", "readiness"]
    list_filter = ["enabled", "protocol", "last_poll_ok", "post_processing", "tenant"]
    search_fields = ["name", "host", "credential_name", "tenant__name", "tenant__slug"]
    actions = ["poll_now_action"]
    readonly_fields = ["configuration_warnings", "next_run", "poll_state", "recent_polls", "imap_uidvalidity",
                       "imap_resync", "push_state_text"]
    fieldsets = [
        (None, {"fields": ["tenant", "name", "enabled", "configuration_warnings"]}),
        ("Server", {"fields": ["protocol", "host", "port", "protection", "timeout", "verify_certificate",
                               "trusted_ca"]}),
        ("Authentication", {"fields": ["authentication", "credential_name", "sasl_mechanism",
                                        "allow_plain_without_tls"]}),
        PROXY_FIELDSET,
        ("Mailbox", {"fields": ["folder", "selection", "max_messages", "max_message_size"]}),
        ("Post-processing", {
            "fields": ["post_processing", "archive_folder"],
            "description": "Done on the server only after the mail is stored and committed. IMAP: mark as "
                           "read, delete, move to the archive folder, archive and mark as read, or keep "
                           "unchanged (remembered by UID). POP3: delete or keep (remembered by UIDL).",
        }),
        ("Schedule", {
            "fields": ["schedule_kind", "schedule_every", "schedule_weekdays", "schedule_start_hour",
                       "schedule_end_hour", "schedule_cron", "timezone", "next_run", "lock_timeout"],
            "description": "Every N seconds; or every N seconds on the chosen weekdays (0 = Monday) between "
                           "the hours; or a cron expression (minute hour day month weekday). All in the "
                           "time zone given (IANA name, e.g. Europe/Berlin).",
        }),
        ("Push (IMAP IDLE)", {
            "fields": ["push", "push_state_text"],
            "description": "Poll as soon as the server reports new mail (needs `manage.py run_idle`); the "
                           "schedule keeps polling as the fallback.",
        }),
        ("Polls", {"fields": ["poll_state", "recent_polls", "imap_uidvalidity", "imap_resync"]}),
    ]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("tenant")

    # --- saving: the next run follows the schedule
    def save_model(self, request: HttpRequest, obj: InboundConnection, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change or obj.next_poll_at is None or any(f in form.changed_data for f in SCHEDULE_FIELDS):
            schedule.reschedule(connection=obj)
        for warning in processing_warnings(connection=obj):
            messages.warning(request, warning)

    # --- read-only panels
    @admin.display(description="warnings")
    def configuration_warnings(self, obj: InboundConnection | None) -> str:
        if obj is None or obj.pk is None:
            return "–"
        items = processing_warnings(connection=obj)
        if not items:
            from ..models import Readiness
            from ..services.setup import checklist

            if checklist.readiness(connection=obj) == Readiness.BLOCKED:  # "No warnings." beside Blocked misled
                return format_html('<span style="color:#ba2121">{}</span>',
                                   "No warnings about these settings, but the connection is Blocked: "
                                   "see the setup checklist above.")
            return format_html('<span style="color:#417505">{}</span>', "No warnings.")
        return format_html('<ul class="tm-inbound-warnings" style="margin:0;padding-left:1.2em;color:#b36b00">{}</ul>',
                           format_html_join("", "<li>{}</li>", ((w,) for w in items)))

    @admin.display(description="schedule")
    def schedule_text(self, obj: InboundConnection) -> str:
        try:
            return schedule.describe(schedule=schedule.Schedule.of(obj))
        except Exception as exc:  # an invalid stored value: say so instead of breaking the list
            return f"invalid: {exc}"

    @admin.display(description="next run", ordering="next_poll_at")
    def next_run(self, obj: InboundConnection | None) -> str:
        if obj is None or obj.pk is None:
            return "computed when saved"
        if not obj.enabled:
            return "disabled"
        if obj.next_poll_at is None:
            return "at the next dispatch (not scheduled yet)"
        local = obj.next_poll_at
        try:
            from zoneinfo import ZoneInfo

            local = obj.next_poll_at.astimezone(ZoneInfo(obj.timezone or "UTC"))
        except Exception:
            pass
        text = f"{local:%Y-%m-%d %H:%M:%S %Z}"
        if obj.in_backoff:
            text += f" (backing off after {obj.consecutive_failures} failed poll(s))"
        return text

    @admin.display(description="last poll", ordering="last_poll_at")
    def last_poll(self, obj: InboundConnection) -> str:
        if obj.last_poll_at is None:
            return format_html('<span style="color:#666">{}</span>', "never")
        colour, label = ("#417505", "ok") if obj.last_poll_ok else ("#ba2121", "failed")
        return format_html('<span style="color:{}" title="{}">{} {}</span>', colour, obj.last_error[:300], label,
                           timezone.localtime(obj.last_poll_at).strftime("%Y-%m-%d %H:%M"))

    @admin.display(description="state")
    def poll_state(self, obj: InboundConnection | None) -> str:
        if obj is None or obj.pk is None:
            return "–"
        if obj.in_backoff:
            return format_html(
                '<span class="tm-backoff" style="color:#ba2121">Backing off until {} after {} consecutive failed '
                "poll(s). Last error: {}</span>",
                timezone.localtime(obj.backoff_until).strftime("%Y-%m-%d %H:%M:%S"), obj.consecutive_failures,
                obj.last_error[:500] or "–",
            )
        if obj.consecutive_failures:
            return format_html('<span style="color:#ba2121">{} consecutive failed poll(s). Last error: {}</span>',
                               obj.consecutive_failures, obj.last_error[:500])
        if obj.last_poll_at is None:
            return "Not polled yet."
        return format_html('<span style="color:#417505">{}</span>', "Healthy.")

    def _history_url(self, obj: InboundConnection, **params: str) -> str:
        return reverse("admin:connections_pollrun_changelist") + "?" + urlencode(
            {"connection__id__exact": obj.pk, **params})

    @admin.display(description="recent polls")
    def recent_polls(self, obj: InboundConnection | None) -> str:
        if obj is None or obj.pk is None:
            return "–"
        runs = history.recent_runs(connection_id=obj.pk)
        messages_url = reverse("admin:connections_storedmessage_changelist") + "?" + urlencode(
            {"connection__id__exact": obj.pk})
        links = format_html('<p><a href="{}">All poll history</a> · <a href="{}">Stored messages</a></p>',
                            self._history_url(obj), messages_url)
        if not runs:
            return format_html("{}<p>No polls yet.</p>", links)
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                                    "<td>{}</td><td>{}</td><td>{}</td></tr>", (
            (timezone.localtime(r.started_at).strftime("%Y-%m-%d %H:%M:%S"), r.trigger, _outcome(r.outcome),
             r.fetched, r.stored, r.skipped, r.failed,
             f"{r.duration_ms} ms" if r.duration_ms is not None else "–", (r.error or "")[:200])
            for r in runs))
        return format_html(
            '{}<table class="tm-poll-history"><thead><tr><th>started</th><th>trigger</th><th>outcome</th>'
            "<th>fetched</th><th>stored</th><th>skipped</th><th>failed</th><th>duration</th><th>error</th>"
            "</tr></thead><tbody>{}</tbody></table>", links, rows)

    # --- Poll now: button (POST-only URL) and action; needs the operator role
    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path("<path:object_id>/poll/", self.admin_site.admin_view(self.poll_now_view), name="%s_%s_poll" % info),
            *super().get_urls(),
        ]

    def poll_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such connection.")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_permission(request, obj):
            raise PermissionDenied
        dispatch.request_poll(connection_id=obj.pk)
        self.message_user(request, f"Poll of '{obj.name}' queued; its result appears under Recent polls.",
                          messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:connections_inboundconnection_change", args=[obj.pk]))

    @admin.action(description="Poll now", permissions=["run"])
    def poll_now_action(self, request: HttpRequest, queryset) -> None:
        queued = 0
        for obj in queryset:
            if self.has_run_permission(request, obj):
                dispatch.request_poll(connection_id=obj.pk)
                queued += 1
        self.message_user(request, f"{queued} poll(s) queued.", messages.SUCCESS)

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False, change: bool = False,
                           form_url: str = "", obj: Any = None):
        can_run = obj is not None and obj.pk is not None and self.has_run_permission(request, obj)
        context["poll_now_url"] = reverse("admin:connections_inboundconnection_poll", args=[obj.pk]) if can_run else ""
        context["poll_history_url"] = self._history_url(obj) if obj is not None and obj.pk else ""
        return super().render_change_form(request, context, add, change, form_url, obj)


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PollRun)
class PollRunAdmin(_ReadOnly, TenantScopedAdmin):
    list_display = ["started_at", "connection", "tenant", "trigger", "outcome_badge", "fetched", "stored", "skipped",
                    "failed", "bytes", "duration_ms", "short_error"]
    # No per-connection filter list (10,000 connections would be 10,000 links): the
    # connection page links here with ?connection__id__exact=<id>; search finds by name.
    list_filter = ["outcome", "trigger", ("started_at", admin.DateFieldListFilter), "tenant"]
    search_fields = ["connection__name", "error"]
    date_hierarchy = "started_at"
    list_select_related = ["connection", "tenant"]
    readonly_fields = [f.name for f in PollRun._meta.fields]

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: PollRun) -> str:
        return _outcome(obj.outcome)

    @admin.display(description="error")
    def short_error(self, obj: PollRun) -> str:
        return (obj.error or "")[:120]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # pruned by retention, not by hand


class AttachmentInline(_ReadOnly, admin.TabularInline):
    model = Attachment
    extra = 0
    can_delete = False
    fields = ["filename", "content_type", "size", "inline", "content_id", "sha256", "file"]
    readonly_fields = fields


@admin.register(StoredMessage)
class StoredMessageAdmin(EraseMessagesAdminMixin, _ReadOnly, TenantScopedAdmin):
    actions = ["erase_messages"]
    list_display = ["subject_text", "from_header", "date", "connection", "tenant", "size", "has_attachments",
                    "parsed", "problems", "oversized", "post_processed"]
    list_filter = ["parsed", "oversized", "has_attachments", ("fetched_at", admin.DateFieldListFilter), "tenant"]
    search_fields = ["subject", "from_header", "to_header", "message_id", "raw_sha256", "connection__name"]
    date_hierarchy = "fetched_at"
    list_select_related = ["connection", "tenant"]
    inlines = [AttachmentInline]
    fieldsets = [
        (None, {"fields": ["tenant", "connection", "subject", "from_header", "to_header", "cc_header",
                           "reply_to_header", "date", "message_id"]}),
        ("Server", {"fields": ["server_key", "uidvalidity", "uid", "uidl", "fetched_at", "post_processed_at"]}),
        ("Raw", {"fields": ["raw", "raw_sha256", "size", "oversized", "parsed", "parse_problems"]}),
        ("Bodies", {"fields": ["text_body", "html_body"], "classes": ["collapse"]}),
    ]
    readonly_fields = [f.name for f in StoredMessage._meta.fields]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).defer("text_body", "html_body", "safe_html")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # exactly-once bookkeeping: deleting a row would fetch the mail again

    @admin.display(description="subject", ordering="subject")
    def subject_text(self, obj: StoredMessage) -> str:
        return obj.subject or "(no subject)"

    @admin.display(description="parsed cleanly", boolean=True)
    def problems(self, obj: StoredMessage) -> bool:
        return not bool(obj.parse_problems)

    @admin.display(description="post-processed", boolean=True, ordering="post_processed_at")
    def post_processed(self, obj: StoredMessage) -> bool:
        return obj.post_processed_at is not None


@admin.register(Attachment)
class AttachmentAdmin(_ReadOnly, TenantScopedAdmin):
    list_display = ["filename", "content_type", "size", "inline", "message", "tenant"]
    list_filter = ["inline", "tenant"]
    search_fields = ["filename", "content_type", "sha256"]
    list_select_related = ["message", "tenant"]
    readonly_fields = [f.name for f in Attachment._meta.fields]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
