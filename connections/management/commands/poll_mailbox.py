"""Run one poll of an inbound connection now and print a summary (see docs/inbound.md)."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from connections.errors import TenantMailError
from connections.management.exits import command_error
from connections.models import PollOutcome
from connections.services.access.lookup import find_connection
from connections.services.inbound import poll


class Command(BaseCommand):
    help = (
        "Poll the inbound connection CONNECTION-NAME of the tenant TENANT-SLUG once, now (the "
        "mailbox lock and every post-processing rule apply as in a scheduled poll), and print a "
        "summary. Exit status: 0 success; 1 failed, some mails failed, or skipped because "
        "another poll of the mailbox is running; 2 unknown tenant or connection."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant_slug", metavar="TENANT-SLUG")
        parser.add_argument("connection_name", metavar="CONNECTION-NAME")
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    def handle(self, *args, tenant_slug: str, connection_name: str, json: bool = False, **options) -> None:
        try:
            connection = find_connection(tenant=tenant_slug, name=connection_name, kind="inbound")
        except TenantMailError as exc:
            raise command_error(exc) from None
        result = poll.poll(connection_id=connection.pk, trigger="command")
        if json:
            self.stdout.write(_json_dumps({"tenant": tenant_slug, "connection": connection_name, **result.to_dict()}))
        else:
            self.stdout.write(f"{tenant_slug}/{connection_name}: {result.summary()}")
        if result.outcome != PollOutcome.SUCCESS:  # failed, partly failed, or locked by another poll
            raise SystemExit(1)


def _json_dumps(data: dict) -> str:
    return json.dumps(data, sort_keys=True)
