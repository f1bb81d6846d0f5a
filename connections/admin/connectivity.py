"""The "Test connection" button, action, last-result panel and list column of connection admins.

Add the mixin in front of the connection admin's bases (inbound and outbound)::

    class InboundConnectionAdmin(ConnectivityTestAdminMixin, SetupChecklistAdminMixin, TenantScopedAdmin):
        ...

It adds, without any other change to the admin:
- a POST-only URL ``<id>/test/`` (name ``admin:connections_<model>_test``) that runs the test
  under the connection's timeout, stores the result and reports it with admin messages;
- a "Test connection" button in the object tools (when the admin uses no change_form template of
  its own; an own template adds it with
  ``{% include "admin/connections/connectivity_button.html" %}`` inside
  ``{% block object-tools-items %}``) and in the "Connectivity test" panel of the change page;
- the "Connectivity test" panel (read-only field ``connectivity_test``): last time, pass/fail,
  summary, every step with its duration, message, hint and details, the certificate chain;
- the admin action "Test connection" and a "last test" list column.

Running a test needs the operator role in the connection's tenant (``has_run_permission``);
viewers see the last result only. All work is done by ``connections.services.setup.connectivity``.
"""
from __future__ import annotations

import re
import time
from contextvars import ContextVar
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string, select_template
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from connections.conf import conf
from ..errors import TenantMailError
from ..services.setup import connectivity, connectivity_report
from ..services.common import dates
from ..services.setup.connection_settings import connection_kind
from ..services.setup.warnings import security_warnings, short_warnings

CHANGE_FORM_TEMPLATE = "admin/connections/connectivity_change_form.html"
PANEL_TEMPLATE = "admin/connections/connectivity_result.html"
PANEL_FIELD = "connectivity_test"
MAX_ACTION_CONNECTIONS = 25
_REQUEST: ContextVar[HttpRequest | None] = ContextVar("tenantmail_connectivity_request", default=None)


class ConnectivityTestAdminMixin:
    """Connectivity test for an admin of InboundConnection or OutboundConnection."""

    connectivity_fieldset_title = "Connectivity test"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        actions = list(self.actions or ())  # type: ignore[has-type]
        if "test_connection_action" not in actions:
            self.actions = [*actions, "test_connection_action"]

    # --- URLs
    def _connectivity_url_name(self) -> str:
        opts = self.model._meta  # type: ignore[attr-defined]
        return f"{opts.app_label}_{opts.model_name}_test"

    def connectivity_test_url(self, obj: Any) -> str:
        try:
            return reverse(f"{self.admin_site.name}:{self._connectivity_url_name()}", args=[obj.pk])  # type: ignore[attr-defined]
        except NoReverseMatch:
            return ""

    def _change_url(self, obj: Any) -> str:
        opts = self.model._meta  # type: ignore[attr-defined]
        return reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])  # type: ignore[attr-defined]

    def get_urls(self):
        return [
            path(
                "<path:object_id>/test/",
                self.admin_site.admin_view(self.connectivity_test_view),  # type: ignore[attr-defined]
                name=self._connectivity_url_name(),
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    # --- the button's view
    def connectivity_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        # Another tenant's connection answers 404 whatever the method: its existence is not revealed.
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is None:
            raise Http404("No such object.")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"], "The connectivity test runs on POST (the button).")
        if not self.has_run_permission(request, obj):  # type: ignore[attr-defined]
            raise PermissionDenied
        # Outbound: the panel's optional "check addresses" box (MAIL FROM/RCPT TO, then RSET).
        addresses = [a for a in re.split(r"[\s,;]+", request.POST.get("_check_addresses", "")) if a]
        self._run_and_report(request, obj, check_addresses=addresses if connection_kind(obj) == "outbound" else [])
        # ?tested: the panel repeats the confirmation, so that it and the result are both in view.
        return HttpResponseRedirect(self._change_url(obj) + "?tested=1#connectivity-test")

    def _run_and_report(self, request: HttpRequest, obj: Any, *, check_addresses: list[str] | None = None) -> None:
        running = self._start(request, obj, check_addresses=check_addresses)
        if running is not None:
            self._report(request, obj, running, wait=admin_wait())

    def _start(self, request: HttpRequest, obj: Any, *, check_addresses: list[str] | None = None):
        try:
            prepared = connectivity.prepare_test(connection=obj, check_addresses=check_addresses or None)
        except TenantMailError as exc:
            self.message_user(request, f"Connection '{obj.name}': the test could not run: {exc}",  # type: ignore[attr-defined]
                              messages.ERROR)
            return None
        return connectivity.BackgroundTest(prepared=prepared)

    def _report(self, request: HttpRequest, obj: Any, running: Any, *, wait: float) -> None:
        # The page must answer before the web server's worker timeout: a test that needs longer
        # (a slow or silent server, a long connection timeout) goes on and records its result.
        result = running.result(wait=wait)
        if result is None:
            self.message_user(  # type: ignore[attr-defined]
                request,
                f"Connection '{obj.name}': the test is still running (the server is slow to answer; the "
                f"connection's timeout is {obj.timeout} s). Its result will appear in the Connectivity "
                "test section: reload this page in a moment.",
                messages.WARNING,
            )
            return
        if result.ok:
            self.message_user(request, f"Connection '{obj.name}': test passed. {result.summary}",  # type: ignore[attr-defined]
                              messages.SUCCESS)
            return
        failed = result.failed_step or {}
        text = f"Connection '{obj.name}': test FAILED at {failed.get('name', '?')}: {failed.get('message', '')}"
        if failed.get("hint"):
            text += f" — hint: {failed['hint']}"
        self.message_user(request, text, messages.ERROR)  # type: ignore[attr-defined]

    # --- the action
    @admin.action(description="Test connection", permissions=["run"])
    def test_connection_action(self, request: HttpRequest, queryset) -> None:
        objs = list(queryset.select_related("tenant")[: MAX_ACTION_CONNECTIONS + 1])
        if len(objs) > MAX_ACTION_CONNECTIONS:
            self.message_user(  # type: ignore[attr-defined]
                request,
                f"Only the first {MAX_ACTION_CONNECTIONS} selected connections were tested (each test takes "
                "up to its timeout); select fewer to test the rest.",
                messages.WARNING,
            )
            objs = objs[:MAX_ACTION_CONNECTIONS]
        # All selected tests run side by side, within one shared wait.
        started = [(obj, self._start(request, obj)) for obj in objs
                   if self.has_run_permission(request, obj)]  # type: ignore[attr-defined]
        deadline = time.monotonic() + admin_wait()
        for obj, running in started:
            if running is not None:
                self._report(request, obj, running, wait=deadline - time.monotonic())

    # --- change page: panel + button
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return fields if PANEL_FIELD in fields else [*fields, PANEL_FIELD]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        fieldsets = []
        for title, options in super().get_fieldsets(request, obj):  # type: ignore[misc]
            fields = [f for f in options.get("fields", ()) if f != PANEL_FIELD]
            if fields:
                fieldsets.append((title, {**options, "fields": fields}))
        if obj is None or obj.pk is None:
            return fieldsets
        return [*fieldsets, (self.connectivity_fieldset_title, {"fields": [PANEL_FIELD]})]

    def changeform_view(self, request: HttpRequest, object_id=None, form_url: str = "", extra_context=None):
        # The panel (a read-only field, which only gets the object) shows the button only to
        # users who may run the test: it reads the request from this context while rendering.
        token = _REQUEST.set(request)
        try:
            response = super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            return response
        finally:
            _REQUEST.reset(token)

    @admin.display(description="last test")
    def connectivity_test(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "Save the connection to test it."
        request = _REQUEST.get()
        can_run = bool(request is not None and self.has_run_permission(request, obj))  # type: ignore[attr-defined]
        confirmations = []
        if request is not None and request.GET.get("tested"):
            from django.contrib.messages import get_messages

            confirmations = list(get_messages(request))  # (also shown at the top, as always)
        return mark_safe(render_connectivity_panel(  # noqa: S308 - the template escapes every value
            obj, test_url=self.connectivity_test_url(obj) if can_run else "", in_form=True,
            confirmations=confirmations,
        ))

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False, change: bool = False,
                           form_url: str = "", obj: Any = None):
        can_run = obj is not None and obj.pk is not None and self.has_run_permission(request, obj)  # type: ignore[attr-defined]
        context["connectivity_test_url"] = self.connectivity_test_url(obj) if can_run else ""
        response = super().render_change_form(request, context, add, change, form_url, obj)  # type: ignore[misc]
        if self.change_form_template is None and not _own_change_form_exists(self.model._meta):  # type: ignore[attr-defined]
            response.template_name = [CHANGE_FORM_TEMPLATE, *(
                response.template_name if isinstance(response.template_name, list) else [response.template_name]
            )]
        return response

    # --- list page
    def get_list_display(self, request: HttpRequest):
        columns = list(super().get_list_display(request))  # type: ignore[misc]
        # Risky settings show wherever the connection is listed, not only on its page.
        columns = [*columns, *(c for c in ("security_warnings", "last_test") if c not in columns)]
        if hasattr(self, "readiness"):  # with the setup checklist: its columns, in its order
            from ..services.access import tenancy
            from .checklist import arrange_columns

            columns = arrange_columns(columns, one_tenant=tenancy.sole_tenant_id(request.user) is not None)
        return columns

    @admin.display(description="warnings")
    def security_warnings(self, obj: Any) -> str:
        items = short_warnings(connection=obj)
        if not items:
            return "–"
        return format_html(
            '<span class="tm-security-warning" title="{}" style="color:#b36b00">&#9888; {}</span>',
            " ".join(security_warnings(connection=obj)), ", ".join(items),
        )

    @admin.display(description="last test", ordering="last_test_at")
    def last_test(self, obj: Any) -> str:
        if obj.last_test_at is None:
            return format_html('<span title="{}" style="color:#666">not tested</span>', "No connectivity test yet")
        colour, label = ("#417505", "passed") if obj.last_test_ok else ("#ba2121", "failed")
        return format_html(
            '<span class="tm-last-test" data-ok="{}" title="{}" style="color:{};white-space:nowrap">{} {}</span>',
            "1" if obj.last_test_ok else "0", f"{dates.short(obj.last_test_at)}: {obj.last_test_summary}", colour,
            label, dates.compact(obj.last_test_at),
        )


def admin_wait() -> float:
    """Seconds an admin request waits for a test (settings.CONNECTIVITY_ADMIN_WAIT, default 20):
    below the web server's worker timeout (gunicorn: 30 s)."""
    return float(conf.CONNECTIVITY_ADMIN_WAIT)


def _own_change_form_exists(opts: Any) -> bool:
    """Does the project have its own change form template for this model (or app)?"""
    try:
        select_template([
            f"admin/{opts.app_label}/{opts.model_name}/change_form.html",
            f"admin/{opts.app_label}/change_form.html",
        ])
        return True
    except TemplateDoesNotExist:
        return False


def render_connectivity_panel(obj: Any, *, test_url: str = "", in_form: bool = False,
                              confirmations: list | None = None) -> str:
    """The last-result panel of one connection (also usable outside the admin)."""
    report = obj.last_test_report if isinstance(obj.last_test_report, dict) else {}
    steps = []
    for step in report.get("steps", []):
        detail = step.get("detail") or {}
        chain = detail.get("chain_pem") or (detail.get("certificate") or {}).get("chain_pem") or ""
        # The same readable lines as `manage.py test_connection -v2` (features, EHLO lines, yes/no).
        features = detail.get("features") if step.get("name") == "capabilities" else None
        steps.append({**step, "detail_items": connectivity_report.step_details(step, everything=True), "chain_pem": chain,
                      "features": connectivity_report.describe_features(features) if isinstance(features, dict) else ""})
    return render_to_string(PANEL_TEMPLATE, {
        "obj": obj, "kind": connection_kind(obj), "report": report, "steps": steps,
        "warnings": security_warnings(connection=obj), "test_url": test_url, "in_form": in_form,
        "confirmations": confirmations or [],
    })
