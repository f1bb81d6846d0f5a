"""A URLconf for the admin tests: the project's URLs plus an admin site whose connection
admins are built from SetupChecklistAdminMixin alone (independent of the inbound/outbound admins)."""
from django.contrib.admin import AdminSite
from django.urls import path

from connections.admin.base import TenantScopedAdmin
from connections.admin.checklist import ReadinessListFilter, SetupChecklistAdminMixin
from connections.models import InboundConnection, OutboundConnection
from tenantmail.urls import urlpatterns as project_urlpatterns

site = AdminSite(name="tmtest")


class InboundAdmin(SetupChecklistAdminMixin, TenantScopedAdmin):
    list_display = ["name", "tenant", "readiness"]
    list_filter = [ReadinessListFilter]
    fieldsets = [(None, {"fields": ["tenant", "name", "host", "credential_name"]})]


class OutboundAdmin(SetupChecklistAdminMixin, TenantScopedAdmin):
    list_display = ["name", "tenant", "readiness"]
    list_filter = [ReadinessListFilter]


class _FakeConnectivity:
    """Stands in for ConnectivityTestAdminMixin's URL (only the URL is used by the checklist)."""

    def connectivity_test_url(self, obj):
        return f"/tmtest/connections/outboundconnection/{obj.pk}/test/"


class OutboundWithTestAdmin(_FakeConnectivity, OutboundAdmin):
    pass


site.register(InboundConnection, InboundAdmin)
site.register(OutboundConnection, OutboundWithTestAdmin)

urlpatterns = [path("tmtest/", site.urls), *project_urlpatterns]
