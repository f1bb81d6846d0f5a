"""Erasing stored mail from the admin (data-protection requests): admin role, a reason,
an admin log entry per message (services.messages.retention.erase)."""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpRequest
from django.template.response import TemplateResponse

from ..errors import TenantMailError
from ..services.messages import retention
from ..services.access import tenancy


class EraseMessagesAdminMixin:
    """Adds the action "Erase selected messages" to the StoredMessage admin."""

    def has_erase_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and tenancy.can(request.user, None, action="change")

    @admin.action(description="Erase selected messages (data-protection request)…", permissions=["erase"])
    def erase_messages(self, request: HttpRequest, queryset):
        allowed = tenancy.scope(queryset, request.user, action="change")
        error = ""
        if request.POST.get("confirm_erase"):
            reason = (request.POST.get("erase_reason") or "").strip()
            if not reason:
                error = "Give the reason (for example the request's reference); it is written to the admin log."
            else:
                done = 0
                for pk in allowed.values_list("pk", flat=True):
                    try:
                        retention.erase(message_id=pk, user=request.user, reason=reason)
                        done += 1
                    except TenantMailError as exc:
                        self.message_user(request, f"Message #{pk}: {exc}", messages.ERROR)
                self.message_user(request, f"{done} message(s) erased; the reason is in the admin log.")
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Erase messages",
            "opts": self.model._meta,
            "queryset": allowed,
            "skipped": queryset.count() - allowed.count(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "error": error,
        }
        return TemplateResponse(request, "admin/connections/storedmessage/erase_confirmation.html", context)
