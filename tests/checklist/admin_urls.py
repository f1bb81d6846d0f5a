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


site.register(InboundConnection, InboundAdmin)
site.register(OutboundConnection, OutboundAdmin)

urlpatterns = [path("tmtest/", site.urls), *project_urlpatterns]
