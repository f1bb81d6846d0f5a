"""TenantMail's admin site: its own name, and the models in the order an operator sets up.

Installed through `TenantMailAdminConfig` (in INSTALLED_APPS instead of
"django.contrib.admin"), so `django.contrib.admin.site` *is* this site and every
`@admin.register` keeps working unchanged.
"""
from __future__ import annotations

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig

# The set-up order: tenants and who may use them, credentials, connections, then what they
# produce. Models not named here follow, alphabetically.
MODEL_ORDER = [
    "Tenant", "Membership", "UserCredential", "OAuth2ClientCredentials", "OAuth2AuthorizationCode",
    "InboundConnection", "OutboundConnection", "ProxyProfile",
    "OutboxMessage", "OutboxTemplate", "StoredMessage", "PollRun", "Attachment",
    "Webhook", "WebhookDelivery", "ApiToken", "Alert", "AlertSettings",
]


class TenantMailAdminSite(AdminSite):
    site_header = "TenantMail"
    site_title = "TenantMail admin"
    index_title = "Tenants, credentials and mail connections"
    # The connection lists have many columns (readiness, last test, next poll …): the
    # sidebar would take a quarter of the width and push them off screen. The breadcrumbs
    # and the index page lead everywhere it did.
    enable_nav_sidebar = False
    # One dash for "nothing" everywhere: Django's default is "-", our own columns use "–".
    empty_value_display = "–"

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        rank = {name: i for i, name in enumerate(MODEL_ORDER)}
        for app in apps:
            app["models"].sort(key=lambda m: (rank.get(m["object_name"], len(rank)), m["name"]))
        # The product first, Django's users and groups after it.
        apps.sort(key=lambda a: a["app_label"] != "connections")
        return apps


class TenantMailAdminConfig(AdminConfig):
    default_site = "tenantmail.admin_site.TenantMailAdminSite"
