"""Print the readiness of every connection with what is missing (exit 1 when any is Blocked)."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from connections.management.exits import command_error
from connections.models import Readiness
from connections.services.access.lookup import ConnectionNotFound, find_tenant
from connections.services.setup import checklist
from connections.services.monitoring import runtime


class Command(BaseCommand):
    help = (
        "Evaluate the setup checklist of every inbound and outbound connection (of one tenant "
        "when a slug is given) and print its readiness — Ready, Needs attention or Blocked — "
        "with the items that are not done, and its run-time state (failing, backing off, overdue). "
        "Exits with status 1 when any connection is Blocked, failing, backing off or overdue."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant_slug", nargs="?", metavar="tenant-slug", help="Only this tenant.")
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print JSON (every item of every connection).")
        parser.add_argument("--all", dest="show_all", action="store_true", help="Also print the items that are done.")
        parser.add_argument(
            "--strict", action="store_true", help="Exit with status 1 also when a connection Needs attention.",
        )

    def handle(
        self, *args, tenant_slug: str | None = None, as_json: bool = False, show_all: bool = False,
        strict: bool = False, **options,
    ):
        tenant_ids = None
        if tenant_slug:
            try:
                tenant_ids = [find_tenant(slug=tenant_slug).pk]
            except ConnectionNotFound as exc:
                raise command_error(exc) from None
        evaluations = checklist.evaluate_many(connections=checklist.connections_for(tenant_ids=tenant_ids))
        blocked = sum(1 for e in evaluations if e.readiness == Readiness.BLOCKED)
        states = {id(e): runtime.state_of(e.connection) for e in evaluations}  # issue 16: run-time state
        if as_json:
            self._json(evaluations, states)
        else:
            self._text(evaluations, show_all=show_all, states=states)
        if blocked:
            raise CommandError(f"{blocked} connection{'s are' if blocked != 1 else ' is'} Blocked.", returncode=1)
        troubled = sum(1 for s in states.values() if s.bad)
        if troubled:
            raise CommandError(f"{troubled} connection{'s are' if troubled != 1 else ' is'} failing, backing off "
                               "or overdue.", returncode=1)
        attention = sum(1 for e in evaluations if e.readiness == Readiness.NEEDS_ATTENTION)
        if strict and attention:
            raise CommandError(
                f"{attention} connection{'s' if attention != 1 else ''} {'need' if attention != 1 else 'needs'} "
                "attention (--strict).", returncode=1,
            )

    def _json(self, evaluations, states) -> None:
        counts = {r.value: 0 for r in Readiness}
        for e in evaluations:
            counts[e.readiness.value] += 1
        rows = []
        for e in evaluations:
            state = states[id(e)]
            rows.append({**e.as_dict(), "state": state.state, "state_detail": state.detail,
                         "state_since": state.since.isoformat() if state.since else None})
        self.stdout.write(json.dumps({"connections": rows, "summary": counts}, indent=2, ensure_ascii=False))

    def _text(self, evaluations, *, show_all: bool, states) -> None:
        if not evaluations:
            self.stdout.write("No connections.")
            return
        styles = {
            Readiness.READY: self.style.SUCCESS, Readiness.NEEDS_ATTENTION: self.style.WARNING,
            Readiness.BLOCKED: self.style.ERROR,
        }
        counts = {r: 0 for r in Readiness}
        for e in evaluations:
            r = e.readiness
            counts[r] += 1
            c = e.connection
            state = states[id(e)]
            run = f"  [{state.label}]" if state.state != "ok" else ""
            self.stdout.write(styles[r](f"{r.label:<15}") + f" {e.kind:<8} {c.tenant.slug}/{c.name}  ({c.host}){run}")
            for item in (e.items if show_all else e.problems):
                detail = f": {item.detail}" if item.detail else ""
                self.stdout.write(f"    {item.symbol} {item.label}{detail}")
        self.stdout.write(
            f"{len(evaluations)} connection{'s' if len(evaluations) != 1 else ''}: "
            + ", ".join(f"{counts[r]} {r.label}" for r in Readiness)
        )
