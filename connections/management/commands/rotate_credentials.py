"""Re-encrypt every stored credential password with the newest key in FERNET_KEYS."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from connections.services.setup.key_rotation import rotate_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt the password and the deployed password of every User Credentials artifact "
        "with the first (newest) key in FERNET_KEYS. Run it after putting a new key first in "
        "FERNET_KEYS and before removing the old key. Exits with status 1, naming the "
        "artifacts, when a value cannot be decrypted with any key in FERNET_KEYS."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true",
            help="Only check that every value decrypts with FERNET_KEYS; write nothing.",
        )

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        report = rotate_keys(dry_run=dry_run)
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        self.stdout.write(
            f"{report.artifacts} User Credentials artifact(s) checked; {verb} {report.rotated} "
            f"artifact(s) ({report.secrets} encrypted value(s)) with the newest key."
        )
        if report.failures:
            for failure in report.failures:
                self.stderr.write(f"  - {failure}")
            raise CommandError(
                f"{len(report.failures)} encrypted value(s) could not be decrypted with FERNET_KEYS "
                "and were left unchanged (listed above). Put the missing old key back into "
                "FERNET_KEYS after the new one and run rotate_credentials again — do not remove "
                "any old key until this command succeeds."
            )
        if not dry_run:
            self.stdout.write(self.style.SUCCESS(
                "Done. Every value is now encrypted with the first key; older keys may be removed "
                "from FERNET_KEYS."
            ))
