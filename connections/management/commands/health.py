"""`manage.py health [--json]`: exit 0 healthy, 1 with problems (listed), 2 when it cannot check."""
from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Check TenantMail's health: database, broker, migrations, beat heartbeat, workers, and every "
        "problem the watchdog finds (failing, backing-off or overdue connections, outbox trouble, "
        "undecryptable credentials, disk space). Exit status 0 healthy, 1 problems (listed), "
        "2 when the check itself cannot run (e.g. the database is unreachable)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print JSON.")

    def handle(self, *args, as_json: bool = False, **options):
        from connections.services.monitoring import health, watchdog

        try:
            ready = health.readiness()
            findings = watchdog.find_all()
        except Exception as exc:
            message = f"Cannot check: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if as_json:
                self.stdout.write(json.dumps({"status": "unknown", "error": message}))
            else:
                self.stderr.write(self.style.ERROR(message))
            sys.exit(2)
        # Beat and workers are in both lists: report them once (as readiness checks).
        findings = [f for f in findings if f.key not in ("system:beat", "system:workers")]
        healthy = ready.ok and not findings
        if as_json:
            self.stdout.write(json.dumps({
                **ready.as_dict(), "status": "ok" if healthy else "problems",
                "problems": [{"key": f.key, "severity": f.severity, "title": f.title, "detail": f.detail}
                             for f in findings],
            }, indent=2, ensure_ascii=False))
        else:
            for check in ready.checks:
                style = self.style.SUCCESS if check.ok else self.style.ERROR
                self.stdout.write(style(f"{'ok' if check.ok else 'FAIL':<5}") + f" {check.name}: {check.detail}")
            for f in findings:
                self.stdout.write(self.style.WARNING(f"{f.severity.upper():<9}") + f" {f.title}")
            self.stdout.write("Healthy." if healthy else
                              f"{len(ready.problems) + len(findings)} problem(s).")
        if not healthy:
            sys.exit(1)
