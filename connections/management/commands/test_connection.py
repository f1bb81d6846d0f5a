"""`manage.py test_connection <tenant-slug> <connection-name>`: the connectivity test from the shell.

Exit status: 0 the test passed, 1 it failed, 2 it could not run (unknown tenant or connection,
ambiguous name, options that do not fit). `--json` prints one JSON object (the stored report) instead of
the step-by-step text. The password is never printed.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from connections.errors import ConfigurationError, TenantMailError, ValidationError
from connections.management.exits import command_error
from connections.models import Authentication, Protection
from connections.services.access.lookup import ConnectionNotFound, find_connection, tenant_connections
from connections.services.setup.connectivity import probe_connection
from connections.services.setup.connectivity_report import step_details

class Command(BaseCommand):
    help = (
        "Run the connectivity test of a connection (DNS, TCP, TLS, greeting, capabilities, "
        "authentication, then folders/STAT/address checks) and store the result on it. "
        "Exit 0 when it passes, 1 when it fails, 2 for an unknown tenant or connection or bad options."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug", help="slug of the tenant")
        parser.add_argument("connection_name", nargs="?",
                            help="name of the inbound or outbound connection (or --all)")
        parser.add_argument("--all", action="store_true", dest="all_connections",
                            help="test every connection of the tenant (with --kind: every one of that kind); "
                                 "exit 1 if any fails")
        parser.add_argument("--kind", choices=["inbound", "outbound"],
                            help="which connection, when the name exists both inbound and outbound")
        parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
        parser.add_argument("--check-address", action="append", default=[], metavar="ADDR", dest="check_addresses",
                            help="SMTP only: MAIL FROM + RCPT TO for ADDR, then RSET; nothing is sent (repeatable)")
        parser.add_argument("--from", dest="sender", metavar="ADDR",
                            help="SMTP only: the MAIL FROM address for --check-address (default: the "
                                 "connection's default From)")
        parser.add_argument("--no-store", action="store_true",
                            help="do not record the result as the connection's last test")

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = options["json"]
        try:
            if options["all_connections"] == bool(options["connection_name"]):
                raise ConnectionNotFound("Name one connection, or use --all.",
                                         hint="test_connection <tenant-slug> <connection-name> | --all")
            if options["all_connections"]:
                if options["check_addresses"]:
                    raise ConnectionNotFound("--check-address needs one connection, not --all.")
                connections = tenant_connections(tenant_slug=options["tenant_slug"], kind=options["kind"])
            else:
                connections = [find_connection(tenant=options["tenant_slug"], name=options["connection_name"],
                                               kind=options["kind"])]
            results = [
                probe_connection(connection=c, check_addresses=options["check_addresses"], sender=options["sender"],
                                 store=not options["no_store"])
                for c in connections
            ]
        except TenantMailError as exc:
            if as_json:
                self.stdout.write(json.dumps({"ok": False, "error": exc.message, "hint": exc.hint}))
            # probe_connection raises only for options that do not fit the connection: usage.
            raise command_error(exc, usage=(ValidationError, ConfigurationError)) from None

        ok = all(r.ok for r in results)
        if options["all_connections"]:
            if as_json:
                self.stdout.write(json.dumps({"ok": ok, "tenant": options["tenant_slug"],
                                              "results": [r.report for r in results]},
                                             indent=2, ensure_ascii=False, default=str))
            else:
                for result in results:
                    self._print_text(result.report, verbosity=options["verbosity"])
                    if options["verbosity"]:
                        self.stdout.write("")
                failed = [r.report["connection"]["name"] for r in results if not r.ok]
                line = f"{len(results) - len(failed)} of {len(results)} connections passed"
                self.stdout.write(self.style.SUCCESS(line) if ok else self.style.ERROR(
                    f"{line}; failed: {', '.join(failed)}"))
        elif as_json:
            self.stdout.write(json.dumps(results[0].report, indent=2, ensure_ascii=False, default=str))
        else:
            self._print_text(results[0].report, verbosity=options["verbosity"])
        if not ok:
            sys.exit(1)

    # --- text output
    def _print_text(self, report: dict[str, Any], *, verbosity: int) -> None:
        status = self.style.SUCCESS("PASS") if report["ok"] else self.style.ERROR("FAIL")
        if verbosity == 0:  # one line, for cron mails and scripts
            self.stdout.write(f"{status}: {report['summary']}")
            return
        c = report["connection"]
        # The admin's words for the settings (the JSON keeps the stored values).
        protection = dict(Protection.choices).get(c["protection"], c["protection"])
        auth = dict(Authentication.choices).get(c["authentication"], c["authentication"])
        if c["credential_name"]:
            auth += f", credential '{c['credential_name']}'"
        self.stdout.write(
            f"Connectivity test of {c['kind']} connection '{c['name']}' (tenant {c['tenant']}): "
            f"{c['protocol'].upper()} {c['host']}:{c['port']}, protection {protection}, "
            f"authentication {auth}, timeout {c['timeout']} s"
        )
        for warning in report.get("warnings", []):
            self.stdout.write(self.style.WARNING(f"  ! warning: {warning}"))
        width = max((len(s["name"]) for s in report["steps"]), default=8)
        # Details, hints and the chain line up under the step's message.
        indent = " " * len(f"  [ ok ] {'':<{width}} {0.0:>9.1f} ms  ")
        for step in report["steps"]:
            if not step["ok"]:
                mark, style = "FAIL", self.style.ERROR
            elif step.get("skipped"):
                mark, style = "skip", self.style.WARNING
            else:
                mark, style = " ok ", self.style.SUCCESS
            self.stdout.write(
                style(f"  [{mark}] {step['name']:<{width}} {step['duration_ms']:>9.1f} ms")
                + (f"  {step['message']}" if step.get("message") else "")
            )
            for line in self._detail_lines(step, verbosity=verbosity):
                self.stdout.write(f"{indent}{line}")
            if step.get("hint"):
                self.stdout.write(f"{indent}hint: {step['hint']}")
            chain = self._chain(step)
            if chain and (verbosity >= 2 or not step["ok"] or not step["detail"].get("verified", True)):
                # No advice here: trusting it fixes an unknown issuer, not a wrong name or an
                # expired certificate; the step's hint says what to do.
                self.stdout.write(f"{indent}the server's certificate chain (PEM):")
                self.stdout.write(chain.rstrip())
        self.stdout.write(f"{status}: {report['summary']} (total {report['duration_ms']:.1f} ms)")

    @staticmethod
    def _chain(step: dict[str, Any]) -> str:
        detail = step.get("detail") or {}
        return detail.get("chain_pem") or (detail.get("certificate") or {}).get("chain_pem") or ""

    @staticmethod
    def _detail_lines(step: dict[str, Any], *, verbosity: int) -> list[str]:
        return [f"{label}: {text}" for label, text in step_details(step, everything=verbosity >= 2)]
