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

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from ..models import Readiness
from ..services import checklist
from ..services.diagram import diagram_svg

PANEL_TEMPLATE = "admin/connections/checklist_panel.html"
CHECKLIST_FIELDS = ("setup_checklist", "connection_diagram")
# The request being rendered: read-only field callables only get the object.
_REQUEST: ContextVar[HttpRequest | None] = ContextVar("tenantmail_checklist_request", default=None)
READINESS_COLOURS = {Readiness.READY: "#417505", Readiness.NEEDS_ATTENTION: "#b36b00", Readiness.BLOCKED: "#ba2121"}


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
        return queryset.filter(pk__in=checklist.ids_with_readiness(queryset, value))


def render_panel(connection: Any, *, refresh_url: str = "", test_url: str = "") -> str:
    """The checklist panel's HTML for one connection (`test_url`: a Test connection button)."""
    return render_to_string(PANEL_TEMPLATE, {
        "evaluation": checklist.evaluation(connection), "refresh_url": refresh_url, "test_url": test_url,
    })


class SetupChecklistAdminMixin:
    """Adds the live setup checklist, the connection diagram and the readiness column."""

    checklist_fieldset_title = "Setup checklist"

    # --- change page
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return fields + [f for f in CHECKLIST_FIELDS if f not in fields]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        cleaned = []
        for title, options in fieldsets:  # keep our fields out of the other fieldsets
            fields = [f for f in options.get("fields", ()) if f not in CHECKLIST_FIELDS]
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
        return mark_safe(diagram_svg(obj))  # noqa: S308 - every label escaped by diagram_svg

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
    def get_changelist_instance(self, request: HttpRequest):
        cl = super().get_changelist_instance(request)  # type: ignore[misc]
        for ev in checklist.evaluate_many(cl.result_list):
            ev.connection._tm_evaluation = ev
        return cl

    @admin.display(description="readiness")
    def readiness(self, obj: Any) -> str:
        ev = getattr(obj, "_tm_evaluation", None) or checklist.evaluation(obj)
        value = ev.readiness
        problems = ev.problems
        tip = "; ".join(f"{i.symbol} {i.label}" for i in problems[:4])
        return format_html(
            '<span class="tm-readiness" data-readiness="{}" title="{}" style="display:inline-block;padding:1px 8px;'
            'border-radius:9px;color:#fff;background:{}">{}</span>',
            value.value, tip, READINESS_COLOURS[value], value.label,
        )
