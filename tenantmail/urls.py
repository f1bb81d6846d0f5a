from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from django.views.generic import RedirectView

from connections import views_health
from connections.oauth2_views import callback as oauth2_callback

# A small envelope, so that browsers asking for /favicon.ico get an icon, not a 404 in the log.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect x="2" y="6" width="28" height="20" rx="3" fill="#417690"/>'
    '<path d="M3 8l13 10 13-10" fill="none" stroke="#fff" stroke-width="2.5"/></svg>'
)


@require_safe
@cache_control(max_age=86400, public=True)
def favicon(request):
    return HttpResponse(FAVICON_SVG, content_type="image/svg+xml")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("messages/", include("connections.urls")),
    path("oauth2/callback/", oauth2_callback, name="oauth2_callback"),
    path("api/v1/", include("connections.api.urls")),
    path("favicon.ico", favicon),
    path("healthz", views_health.healthz, name="healthz"),
    path("readyz", views_health.readyz, name="readyz"),
    path("metrics", views_health.metrics, name="metrics"),
    path("", RedirectView.as_view(url="/messages/", permanent=False)),
]
