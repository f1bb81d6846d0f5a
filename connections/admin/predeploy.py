"""On the User Credentials artifact's page: "Test with these values" for each connection that
uses it, with the stored, not yet deployed user name and password (issue 20, item 9), so a new
password is tried before Deploy puts it in use. Nothing is stored on the connection."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse

from ..models import CredentialKind, InboundConnection, OutboundConnection, UserCredential
from ..services.setup import credentials as credential_service
from ..services.setup import predeploy

MODELS = {"inbound": InboundConnection, "outbound": OutboundConnection}


class EnteredValuesTestAdminMixin:
    def get_urls(self):
        return [path("<path:object_id>/test-entered/<str:kind>/<int:connection_id>/",
                     self.admin_site.admin_view(self.test_entered_view),  # type: ignore[attr-defined]
                     name=f"connections_{self.opts.model_name}_test_entered"),  # type: ignore[attr-defined]
                *super().get_urls()]  # type: ignore[misc]

    def _entered_tests(self, request: HttpRequest, obj: UserCredential | None) -> list[dict]:
        if obj is None or obj.pk is None or not (obj.version == 0 or obj.has_undeployed_changes):
            return []
        if obj.kind != CredentialKind.USER:  # entered OAuth2 settings are tried by the token step, not here
            return []
        if not self.has_run_permission(request, obj):  # type: ignore[attr-defined]
            return []
        name = f"{self.admin_site.name}:connections_{self.opts.model_name}_test_entered"  # type: ignore[attr-defined]
        return [{"usage": str(u), "url": reverse(name, args=[obj.pk, u.kind, u.connection.pk])}
                for u in credential_service.used_by(credential=obj)]

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False, change: bool = False,
                           form_url: str = "", obj: Any = None):
        context["entered_tests"] = self._entered_tests(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)  # type: ignore[misc]

    def test_entered_view(self, request: HttpRequest, object_id: str, kind: str, connection_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is None or kind not in MODELS or obj.kind != CredentialKind.USER:
            raise Http404("No such object.")
        if not self.has_run_permission(request, obj):  # type: ignore[attr-defined]
            raise PermissionDenied
        conn = MODELS[kind].objects.filter(pk=connection_id, tenant_id=obj.tenant_id,
                                           credential_name=obj.name).select_related("tenant").first()
        if conn is None:
            raise Http404("No such connection uses this artifact.")
        result = predeploy.test_with_entered_values(connection=conn, credential=obj)
        if result.ok:
            self.message_user(request, f"{kind.capitalize()} connection '{conn.name}': test passed. {result.summary} "  # type: ignore[attr-defined]
                              "Deploy to use these values.", messages.SUCCESS)
        else:
            failed = result.failed_step or {}
            text = (f"{kind.capitalize()} connection '{conn.name}': test with {predeploy.ENTERED} FAILED at "
                    f"{failed.get('name', '?')}: {failed.get('message', '')}")
            if failed.get("hint"):
                text += f" — hint: {failed['hint']}"
            self.message_user(request, text + " The deployed values stay in use.", messages.ERROR)  # type: ignore[attr-defined]
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:connections_{self.opts.model_name}_change",  # type: ignore[attr-defined]
                                            args=[obj.pk]))
