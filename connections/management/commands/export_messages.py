"""Write every stored mail of an inbound connection as <id>.eml (see docs/inbound.md)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from connections.errors import TenantMailError
from connections.management.exits import command_error
from connections.services.access.lookup import find_connection
from connections.services.inbound import export


class Command(BaseCommand):
    help = (
        "Write every stored mail of the inbound connection CONNECTION-NAME of the tenant "
        "TENANT-SLUG into DIR as <stored id>.eml, byte for byte as it was received (for "
        "backups and migrations). Existing files of the same name are replaced."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant_slug", metavar="TENANT-SLUG")
        parser.add_argument("connection_name", metavar="CONNECTION-NAME")
        parser.add_argument("--out", required=True, metavar="DIR", help="Directory to write to (created if missing).")

    def handle(self, *args, tenant_slug: str, connection_name: str, out: str, **options) -> None:
        try:
            connection = find_connection(tenant=tenant_slug, name=connection_name, kind="inbound")
        except TenantMailError as exc:
            raise command_error(exc) from None
        try:
            result = export.export_raw(connection_id=connection.pk, out_dir=out)
        except OSError as exc:
            raise CommandError(f"Cannot write to {out}: {exc.strerror or exc}.") from None
        self.stdout.write(f"Wrote {result.written} message(s), {result.bytes} bytes, to {out}.")
        if result.missing:
            ids = ", ".join(str(i) for i in result.missing[:20])
            raise CommandError(f"{len(result.missing)} stored message(s) have no raw file in storage: {ids}.")
