"""`Authorization: Bearer <token>` → the token, and a principal with viewer rights in its
tenant that the tenant-scoped services take in place of a user."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from ..models import ApiToken, Role
from ..services.access import api_tokens


class TokenPrincipal:
    """What `services.access.tenancy` needs of a user: member (viewer) of the token's tenant only."""

    is_authenticated = True
    is_active = True
    is_superuser = False
    is_staff = False
    is_anonymous = False
    pk = None

    def __init__(self, token: ApiToken) -> None:
        self.token = token
        # tenancy._roles() reads this cache first: exactly one tenant, read-only.
        self._tenantmail_roles = {token.tenant_id: Role.VIEWER.value}

    def __str__(self) -> str:
        return f"API token {self.token.name}"


class BearerTokenAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = api_tokens.authenticate(secret=value.strip())
        if token is None:
            raise AuthenticationFailed("Invalid or revoked API token.")
        return TokenPrincipal(token), token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="tenantmail"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "connections.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A per-tenant API token (tm_…)."}
