"""TenantMail's date formats (settings.FORMAT_MODULE_PATH = ["tenantmail.formats"]): the
admin's own date cells match connections.services.common.dates ("2026-11-21 09:37")."""
