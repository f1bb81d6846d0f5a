"""Write the configuration of tenants, credentials and connections as YAML to stdout."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from connections.errors import TenantMailError
from connections.management.exits import command_error
from connections.services.setup import config


HEADER = (
    "# TenantMail configuration: apply with `python manage.py apply_config FILE` (see docs/config.md).\n"
    "# No secret is in this file: each password is read from the environment variable named by password_env.\n"
)


class Command(BaseCommand):
    help = (
        "Write tenants, User Credentials artifacts (passwords as password_env references, never "
        "the secret), outbound and inbound connections as YAML to stdout. With tenant slugs, "
        "only those tenants. The output is the input of apply_config (see docs/config.md)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant_slugs", nargs="*", metavar="tenant-slug", help="Only these tenants.")

    def handle(self, *args, tenant_slugs: list[str], **options) -> None:
        try:
            document = config.export(tenant_slugs=tenant_slugs or None)
        except TenantMailError as exc:
            raise command_error(exc) from None
        self.stdout.write(HEADER + config.dump(document), ending="")
