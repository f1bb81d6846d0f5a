"""Rate limit per API token (API_RATE_LIMIT, e.g. "600/min"), counted in the cache."""
from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle

from connections.conf import conf
from ..models import ApiToken


class TokenRateThrottle(SimpleRateThrottle):
    scope = "api-token"

    def get_rate(self) -> str:
        return str(conf.API_RATE_LIMIT)

    def get_cache_key(self, request, view) -> str | None:
        if isinstance(request.auth, ApiToken):
            return f"tenantmail-throttle-token-{request.auth.pk}"
        return f"tenantmail-throttle-anon-{self.get_ident(request)}"
