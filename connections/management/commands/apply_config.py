"""Make the database match a configuration file (see docs/config.md)."""
from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from connections.errors import TenantMailError
from connections.management.exits import command_error, usage_error
from connections.services.setup import config


class Command(BaseCommand):
    help = (
        "Create and update tenants, User Credentials artifacts and connections so that the "
        "database matches FILE (YAML; '-' reads stdin). Passwords are read from the environment "
        "variables the file names. Everything is validated first; on any error all errors are "
        "listed, nothing is written and the exit status is 1. Prints the changes, or 'No changes.'."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", metavar="FILE", help="The YAML file, or - for stdin.")
        parser.add_argument("--dry-run", action="store_true", help="Print the changes; write nothing.")
        parser.add_argument(
            "--check", action="store_true",
            help="Like --dry-run, and exit with status 2 when the database differs from the file "
            "(drift detection in CI); 0 when it matches.",
        )
        parser.add_argument(
            "--prune", action="store_true",
            help="Also delete the credentials and connections of the file's tenants that the file "
            "no longer names, in the lists each tenant entry gives (tenants are never deleted).",
        )
        parser.add_argument(
            "--user", metavar="USERNAME",
            help="Record deploys as done by this user (admin history, 'deployed by'); the user needs the "
            "operator role in the tenants (or is a superuser). Default: the system.",
        )

    def handle(
        self, *args, file: str, dry_run: bool, prune: bool, check: bool = False, user: str | None = None, **options
    ) -> None:
        dry_run = dry_run or check
        actor = None
        if user:
            from django.contrib.auth import get_user_model

            actor = get_user_model().objects.filter(username=user, is_active=True).first()
            if actor is None:
                raise usage_error(f"No active user named '{user}'.")
        try:
            if file == "-":
                text = sys.stdin.read()
            else:
                with open(file, encoding="utf-8") as fh:
                    text = fh.read()
        except OSError as exc:
            raise usage_error(f"Cannot read {file}: {exc.strerror}.") from None
        except UnicodeDecodeError:
            raise usage_error(f"{file} is not UTF-8 text.") from None
        document = None
        try:
            document = config.load(text)
            plan = config.apply(document, dry_run=dry_run, prune=prune, user=actor,
                                base_dir=None if file == "-" else Path(file).resolve().parent)
        except config.ConfigValidationError as exc:
            where = "<stdin>" if file == "-" else file
            located = [(config.line_of(document, e) if document is not None else None, e) for e in exc.errors]
            # In the order of the file; FILE:LINE: as compilers write it, so editors and CI logs jump there.
            for line, error in sorted(located, key=lambda le: le[0] or 0):
                self.stderr.write(f"{where}:{line}: {error}" if line else f"{where}: {error}")
            raise CommandError(
                f"{len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''} in {where}; nothing was changed."
            ) from None
        except TenantMailError as exc:
            raise command_error(exc, suffix=" Nothing was changed.") from None
        for line in plan.lines():
            self.stdout.write(line)
        if check and not plan.empty:
            raise CommandError("The database differs from the file (see the changes above).", returncode=2)
