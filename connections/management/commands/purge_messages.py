"""Apply retention: strip old stored mail, delete old finished outbox messages (docs/retention.md)."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from connections.errors import TenantMailError
from connections.services.messages import retention


def human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


class Command(BaseCommand):
    help = ("Remove stored mail older than each inbound connection's keep_days (bodies, attachments and "
            "raw file; the row stays, so nothing is fetched again) and finished outbox messages older than "
            "each outbound connection's keep_sent_days. --older-than-days applies to every connection.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", metavar="SLUG")
        parser.add_argument("--connection", metavar="NAME")
        parser.add_argument("--older-than-days", type=int, metavar="N")
        parser.add_argument("--dry-run", action="store_true", help="Report what would be removed, remove nothing.")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, tenant, connection, older_than_days, dry_run, as_json, **options) -> None:
        try:
            result = retention.purge(tenant=tenant, connection=connection, older_than_days=older_than_days,
                                     dry_run=dry_run)
        except TenantMailError as exc:
            raise CommandError(str(exc)) from None
        if as_json:
            self.stdout.write(json.dumps(result.to_dict()))
            return
        verb = "Would remove" if dry_run else "Removed"
        for c in result.connections:
            self.stdout.write(f"{c.tenant}/{c.connection} ({c.direction}, older than {c.older_than_days} days): "
                              f"{c.messages} message(s), {c.attachments} attachment(s), {human(c.bytes)}")
        if not result.connections:
            self.stdout.write("No connection has a retention period (keep_days / keep_sent_days); "
                              "use --older-than-days N to purge anyway.")
        self.stdout.write(f"{verb} {result.messages} message(s) and {result.attachments} attachment(s); "
                          f"{'would free' if dry_run else 'freed'} {human(result.bytes)} ({result.bytes} bytes).")
        if result.deliveries_pruned:
            self.stdout.write(f"Deleted {result.deliveries_pruned} old webhook delivery log row(s).")
