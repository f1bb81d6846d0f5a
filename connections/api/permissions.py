"""Scopes: a view names the scopes of which the token needs one (`required_scopes`)."""
from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission

from ..models import ApiToken


class HasScope(BasePermission):
    message = "This API token lacks the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            raise NotAuthenticated("Send an API token: Authorization: Bearer <token>.")
        needed = getattr(view, "required_scopes", ())
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            needed = getattr(view, "write_scopes", needed)
        ok = any(scope in token.scopes for scope in needed)
        if not ok:
            self.message = f"This API token lacks the scope {' or '.join(needed)}."
        return ok
