"""Remove stored-mail files that no message or attachment refers to (see docs/inbound.md)."""
from __future__ import annotations

import json
from datetime import timedelta

from django.core.management.base import BaseCommand

from connections.errors import TenantMailError
from connections.management.exits import command_error, usage_error
from connections.services.inbound import orphans


class Command(BaseCommand):
    help = (
        "Remove files under MEDIA_ROOT/raw and MEDIA_ROOT/attachments (and leftover spool files) "
        "that no stored message or attachment refers to — left behind by a worker killed between "
        "writing a mail's files and committing it. Only files older than --older-than hours."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", type=float, default=24.0, metavar="HOURS",
                            help="Only files at least this old (default 24; at least 1).")
        parser.add_argument("--dry-run", action="store_true", help="List what would be removed, remove nothing.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the result as one JSON object.")

    def handle(self, *args, older_than: float, dry_run: bool, as_json: bool, **options) -> None:
        try:
            result = orphans.sweep_orphan_files(min_age=timedelta(hours=older_than), dry_run=dry_run)
        except TenantMailError as exc:
            raise (usage_error(str(exc)) if older_than < 1 else command_error(exc)) from None
        if as_json:
            self.stdout.write(json.dumps(result.to_dict()))
            return
        verb = "would remove" if dry_run else "removed"
        self.stdout.write(f"Checked {result.checked} file(s) older than {older_than:g} h: {result.orphans} orphan(s), "
                          f"{result.bytes} bytes; {verb} {result.orphans if dry_run else result.removed}.")
        for name in result.names:
            self.stdout.write(f"  {name}")
        if result.orphans > len(result.names):
            self.stdout.write(f"  … and {result.orphans - len(result.names)} more")

