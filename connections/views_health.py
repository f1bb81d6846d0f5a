"""/healthz, /readyz and /metrics: no login, no tenant data, no secrets (docs/monitoring.md)."""
from __future__ import annotations

import hmac
import logging

from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from connections.conf import conf

log = logging.getLogger(__name__)


@require_safe
@never_cache
def healthz(request):
    """The process answers; touches nothing."""
    return JsonResponse({"status": "ok"})


@require_safe
@never_cache
def readyz(request):
    from .services.monitoring import health

    try:
        result = health.readiness()
    except Exception as exc:  # the database cannot be asked
        log.warning("readyz: cannot check: %s", type(exc).__name__)
        return JsonResponse({"status": "unavailable", "checks": {"database": {"ok": False,
                             "detail": f"unreachable ({type(exc).__name__})"}}}, status=503)
    return JsonResponse(result.as_dict(), status=200 if result.ok else 503)


@require_safe
@never_cache
def metrics(request):
    """Prometheus text format; `Authorization: Bearer <METRICS_TOKEN>` (404 when no token is set)."""
    from .services.monitoring import metrics as service

    token = conf.METRICS_TOKEN
    if not token:
        return HttpResponse("Metrics are off: set METRICS_TOKEN.\n", status=404, content_type="text/plain")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = service.exposition()
    return HttpResponse(body, content_type=content_type)
