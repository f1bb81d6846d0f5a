"""Admin pieces for the setup checklist: the panel, the diagram, the readiness column and filter.

Composes with the other connection mixins (connectivity test, inbound/outbound admins):
it adds two read-only fields shown in their own fieldset at the top of the change page,
one extra URL (the panel alone, for live refresh) and a readiness column computed for the
whole page at once. Usage::

    class InboundConnectionAdmin(SetupChecklistAdminMixin, ..., TenantScopedAdmin):
        list_display = [..., "readiness"]
        list_filter = [..., ReadinessListFilter]
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from ..models import Readiness
from ..services.setup import checklist, switches
from ..services.common import dates
from ..services.setup.connection_settings import connection_kind
from ..services.setup.warnings import security_warnings, short_warnings
from ..services.setup.diagram import diagram_svg

PANEL_TEMPLATE = "admin/connections/checklist_panel.html"
CHECKLIST_FIELDS = ("setup_checklist", "connection_diagram")
# The request being rendered: read-only field callables only get the object.
_REQUEST: ContextVar[HttpRequest | None] = ContextVar("tenantmail_checklist_request", default=None)
READINESS_COLOURS = {Readiness.READY: "#417505", Readiness.NEEDS_ATTENTION: "#b36b00", Readiness.BLOCKED: "#ba2121"}
# Columns that follow the name (what the operator looks for first), and the ones that close the row.
LEADING_COLUMNS = ("readiness", "last_test")
TRAILING_COLUMNS = ("last_error_text",)  # not "last_error": the inbound model field would win
# Columns replaced in the list by a compact one (the full text stays on the change page).
COMPACT_COLUMNS = {"next_run": "next_poll", "last_poll": "last_poll_compact", "host": "server"}
# Shown elsewhere in the row: poll_state is the last error; protocol, port and folder are in
# "server"; the schedule is the next poll's tooltip; protection and authentication are on the
# page, and the risky ones in the warnings column. (All stay on the change page.)
DROPPED_COLUMNS = ("poll_state", "protocol", "port", "folder", "schedule_text", "protection", "authentication",
                   "security_warnings")  # the readiness cell shows the risky settings under its badge
# Inbound: "next poll" says "disabled"; the enabled filter stays.
DROPPED_WITH_NEXT_POLL = ("enabled",)
# Boolean fields that describe a normal state: the admin's red ✗ icon for False read as an
# error. Shown as words instead (field -> display method of the mixin).
STATE_FIELDS = {"imap_resync": "imap_resync_state"}


def arrange_columns(columns: list[str], *, one_tenant: bool = False) -> list[str]:
    """Name, readiness, last test first; compact dates; the last error at the end: the list
    fits a 1280 px screen. `one_tenant`: the user sees a single tenant, so no tenant column."""
    columns = [COMPACT_COLUMNS.get(c, c) for c in columns if c not in DROPPED_COLUMNS]
    if "next_poll" in columns:
        columns = [c for c in columns if c not in DROPPED_WITH_NEXT_POLL]
    if one_tenant:
        columns = [c for c in columns if c != "tenant"]
    columns = [c for i, c in enumerate(columns) if c not in columns[:i]]
    lead = [c for c in LEADING_COLUMNS]
    trail = [c for c in TRAILING_COLUMNS]
    rest = [c for c in columns if c not in lead and c not in trail and c != "name"]
    return ["name", *lead, *rest, *trail] if "name" in columns else [*lead, *rest, *trail]


class ReadinessListFilter(admin.SimpleListFilter):
    """Filter the list by readiness (computed from the checklist, not stored)."""

    title = "readiness"
    parameter_name = "readiness"

    def lookups(self, request: HttpRequest, model_admin: Any):
        return Readiness.choices

    def queryset(self, request: HttpRequest, queryset):
        value = self.value()
        if value not in Readiness.values:
            return queryset
        return queryset.filter(pk__in=checklist.ids_with_readiness(queryset=queryset, value=value))


def render_panel(connection: Any, *, refresh_url: str = "", test_url: str = "") -> str:
    """The checklist panel's HTML for one connection (`test_url`: a Test connection button)."""
    return render_to_string(PANEL_TEMPLATE, {
        "evaluation": checklist.evaluation(connection=connection), "refresh_url": refresh_url, "test_url": test_url,
    }, request=_REQUEST.get())  # the request: its CSP nonce for the panel's script


class SetupChecklistAdminMixin:
    """Adds the live setup checklist, the connection diagram, the readiness, next poll and
    last error columns, and the Enable / Disable actions."""

    checklist_fieldset_title = "Setup checklist"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        actions = list(self.actions or ())  # type: ignore[has-type]
        self.actions = [*actions, *(a for a in ("enable_connections", "disable_connections") if a not in actions)]

    # --- change page
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        fields = [STATE_FIELDS.get(f, f) for f in super().get_readonly_fields(request, obj)]  # type: ignore[misc]
        return fields + [f for f in CHECKLIST_FIELDS if f not in fields]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        cleaned = []
        for title, options in fieldsets:  # keep our fields out of the other fieldsets
            fields = [STATE_FIELDS.get(f, f) for f in options.get("fields", ()) if f not in CHECKLIST_FIELDS]
            if fields:
                cleaned.append((title, {**options, "fields": fields}))
        if obj is None or obj.pk is None:
            return cleaned
        return [(self.checklist_fieldset_title, {"fields": list(CHECKLIST_FIELDS)}), *cleaned]

    def changeform_view(self, request: HttpRequest, object_id=None, form_url: str = "", extra_context=None):
        token = _REQUEST.set(request)
        try:
            response = super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()  # while the request is known to the field callables
            return response
        finally:
            _REQUEST.reset(token)

    def _test_url(self, request: HttpRequest | None, obj: Any) -> str:
        """The connectivity test URL (ConnectivityTestAdminMixin) when the user may run it."""
        url_for = getattr(self, "connectivity_test_url", None)
        if request is None or url_for is None or not self.has_run_permission(request, obj):  # type: ignore[attr-defined]
            return ""
        return url_for(obj)

    @admin.display(description="checklist")
    def setup_checklist(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "Save the connection to see its checklist."
        html = render_panel(obj, refresh_url=self._checklist_url(obj), test_url=self._test_url(_REQUEST.get(), obj))
        return mark_safe(html)  # noqa: S308 - the template escapes every value

    @admin.display(description="diagram")
    def connection_diagram(self, obj: Any) -> str:
        if obj is None or obj.pk is None or not obj.host:
            return "—"
        return mark_safe(diagram_svg(connection=obj))  # noqa: S308 - every label escaped by diagram_svg

    def _checklist_url(self, obj: Any) -> str:
        opts = self.model._meta  # type: ignore[attr-defined]
        return reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_checklist", args=[obj.pk]  # type: ignore[attr-defined]
        )

    def get_urls(self):
        opts = self.model._meta  # type: ignore[attr-defined]
        return [
            path(
                "<path:object_id>/checklist/",
                self.admin_site.admin_view(self.checklist_view),  # type: ignore[attr-defined]
                name=f"{opts.app_label}_{opts.model_name}_checklist",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def checklist_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The panel alone (the change page refreshes it while open)."""
        obj = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if obj is None or not self.has_view_permission(request, obj):  # type: ignore[attr-defined]
            raise Http404("No such object.")
        response = HttpResponse(render_panel(obj, test_url=self._test_url(request, obj)))
        response["Cache-Control"] = "no-store"
        return response

    # --- list page: one evaluation for the whole page
    def get_list_filter(self, request: HttpRequest):
        filters = list(super().get_list_filter(request))  # type: ignore[misc]
        return filters if ReadinessListFilter in filters else [*filters, ReadinessListFilter]

    def get_changelist_instance(self, request: HttpRequest):
        cl = super().get_changelist_instance(request)  # type: ignore[misc]
        for ev in checklist.evaluate_many(connections=cl.result_list):
            ev.connection._tm_evaluation = ev
        return cl

    @admin.display(description="readiness")
    def readiness(self, obj: Any) -> str:
        ev = getattr(obj, "_tm_evaluation", None) or checklist.evaluation(connection=obj)
        value = ev.readiness
        problems = ev.problems
        tip = "; ".join(f"{i.symbol} {i.state_text}" for i in problems[:4])
        badge = format_html(
            '<span class="tm-readiness" data-readiness="{}" title="{}" style="display:inline-block;padding:1px 8px;'
            'border-radius:9px;color:#fff;background:{}">{}</span>',
            value.value, tip, READINESS_COLOURS[value], value.label,
        )
        risky = short_warnings(connection=obj)
        if not risky:
            return badge
        return format_html(
            '{}<br><span class="tm-security-warning" title="{}" style="color:#b36b00">&#9888; {}</span>',
            badge, " ".join(security_warnings(connection=obj)), ", ".join(risky),
        )

    @admin.display(description="last error")
    def last_error_text(self, obj: Any) -> str:
        """The newest failure: the last poll's (inbound), the last failed outbox message's
        (outbound, when the admin annotates `last_outbox_error`), or the last test's."""
        text, when = "", None
        if getattr(obj, "last_poll_ok", None) is False and getattr(obj, "last_error", ""):
            text, when = f"Poll: {obj.last_error}", obj.last_poll_at
        outbox_error = getattr(obj, "last_outbox_error", None)
        if outbox_error and not text:
            text = f"Send: {outbox_error}"
        if obj.last_test_ok is False and (when is None or (obj.last_test_at and obj.last_test_at > when)):
            text = f"Test: {obj.last_test_summary}"
        if not text:
            return "–"
        short = text if len(text) <= 48 else text[:47] + "…"
        return format_html('<span class="tm-last-error" title="{}" style="color:#ba2121">{}</span>', text, short)

    @admin.display(description="server", ordering="host")
    def server(self, obj: Any) -> str:
        protocol = str(getattr(obj, "protocol", "smtp")).upper()
        where = obj.host + (f":{obj.port}" if obj.port else "")
        folder = getattr(obj, "folder", "")
        return format_html('<span class="tm-server">{} {}</span>{}', protocol, where,
                           format_html('<br><small style="color:#666">{}</small>', folder) if folder else "")

    @admin.display(description="next poll", ordering="next_poll_at")
    def next_poll(self, obj: Any) -> str:
        from ..services.inbound import schedule

        try:
            every = schedule.describe(schedule=schedule.Schedule.of(obj))
        except Exception as exc:  # an invalid stored schedule: say so instead of breaking the list
            every = f"invalid schedule: {exc}"
        if not obj.enabled:
            return format_html('<span style="color:#666" title="{}">{}</span>', every, "disabled")
        if obj.next_poll_at is None:
            return format_html('<span title="{}">{}</span>', every, "next dispatch")
        if getattr(obj, "in_backoff", False):
            return format_html('<span class="tm-nowrap" style="color:#ba2121" title="{}">{} (backing off)</span>',
                               f"{dates.short(obj.next_poll_at)}, after {obj.consecutive_failures} failed poll(s); "
                               f"{every}", dates.compact(obj.next_poll_at))
        return format_html('<span class="tm-nowrap" title="{}">{}</span>',
                           f"{dates.short(obj.next_poll_at)}; {every}", dates.compact(obj.next_poll_at))

    @admin.display(description="last poll", ordering="last_poll_at")
    def last_poll_compact(self, obj: Any) -> str:
        if obj.last_poll_at is None:
            return format_html('<span style="color:#666">{}</span>', "never")
        colour, label = ("#417505", "ok") if obj.last_poll_ok else ("#ba2121", "failed")
        return format_html('<span class="tm-nowrap" style="color:{}" title="{}">{} {}</span>', colour,
                           dates.short(obj.last_poll_at), label, dates.compact(obj.last_poll_at))

    # --- Enable / Disable: a switch, open to operators (docs/admin.md says why)
    def _switch(self, request: HttpRequest, queryset, *, enabled: bool) -> None:
        kind = connection_kind(self.model())  # type: ignore[attr-defined]
        ids = [obj.pk for obj in queryset if self.has_run_permission(request, obj)]  # type: ignore[attr-defined]
        result = switches.set_enabled(kind=kind, connection_ids=ids, enabled=enabled)
        word = "Enabled" if enabled else "Disabled"
        if result.changed:
            self.message_user(request, f"{word}: {', '.join(result.changed)}."  # type: ignore[attr-defined]
                              + (" Next polls are scheduled." if enabled and kind == "inbound" else "")
                              + (" Queued messages will be sent." if enabled and kind == "outbound" else ""),
                              messages.SUCCESS)
        if result.unchanged:
            self.message_user(request, f"Already {word.lower()}: {', '.join(result.unchanged)}.",  # type: ignore[attr-defined]
                              messages.INFO)

    @admin.action(description="Enable", permissions=["run"])
    def enable_connections(self, request: HttpRequest, queryset) -> None:
        self._switch(request, queryset, enabled=True)

    @admin.action(description="Disable", permissions=["run"])
    def disable_connections(self, request: HttpRequest, queryset) -> None:
        self._switch(request, queryset, enabled=False)

    @admin.display(description="IMAP re-sync")
    def imap_resync_state(self, obj: Any) -> str:
        if obj is None or not getattr(obj, "imap_resync", False):
            return format_html('<span class="tm-state" data-state="idle" style="color:#666">{}</span>',
                               "Not needed (the folder's UIDVALIDITY is unchanged).")
        return format_html(
            '<span class="tm-state" data-state="info" style="color:#205493">&#8505; {}</span>',
            "In progress: the server renumbered the folder (new UIDVALIDITY); mails are matched to the "
            "stored ones so that none is stored twice.")
