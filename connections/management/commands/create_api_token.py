"""Create an API token for a tenant; the token alone is printed on the last line (contract)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from connections.errors import TenantMailError
from connections.models import ApiScope
from connections.services.access import api_tokens


class Command(BaseCommand):
    help = ("Create a per-tenant API token for /api/v1/. The token is shown once: it is printed "
            "alone on the last line of the output; only its hash is stored.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant", metavar="tenant-slug")
        parser.add_argument("name", metavar="token-name")
        parser.add_argument("--scope", action="append", dest="scopes", default=[], choices=ApiScope.values,
                            help="A scope the token gets (repeat for several).")

    def handle(self, *args, tenant: str, name: str, scopes: list[str], **options) -> None:
        try:
            created = api_tokens.create_token(tenant=tenant, name=name, scopes=scopes)
        except TenantMailError as exc:
            raise CommandError(str(exc)) from None
        token = created.token
        self.stderr.write(f"Created API token '{token.name}' of tenant '{tenant}' with scopes "
                          f"{', '.join(token.scopes)}. It is shown once, below; store it now.")
        self.stdout.write(created.secret)
