"""Key rotation: every stored secret re-encrypted with the newest FERNET_KEYS key.

Passwords, deployed copies and refresh tokens of User Credentials artifacts, and the
cached OAuth2 access tokens and PKCE verifiers. See docs/credentials.md.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from ...errors import CredentialError
from ...models import CredentialStatus, UserCredential
from .credentials import settled_status

log = logging.getLogger(__name__)


@dataclass
class RotationReport:
    artifacts: int = 0  # rows looked at
    rotated: int = 0  # rows re-encrypted with the newest key
    secrets: int = 0  # encrypted values re-encrypted (password and deployed copy)
    failures: list[str] = field(default_factory=list)  # one clear sentence per undecryptable value

    @property
    def ok(self) -> bool:
        return not self.failures


def rotate_keys(*, dry_run: bool = False) -> RotationReport:
    """Re-encrypt every stored password (and deployed copy) with the newest FERNET_KEYS key.

    Each row is rotated in its own short transaction under a row lock, so a concurrent edit
    or deploy is never overwritten. Rows that no key decrypts are left exactly as they
    were, listed in `failures`, and marked Error. With dry_run nothing is written.
    """
    report = RotationReport()
    for pk in UserCredential.objects.order_by("pk").values_list("pk", flat=True).iterator():
        _rotate_row(pk, report, dry_run=dry_run)
    if not dry_run:
        _rotate_token_cache(report)
    log.info(
        "credential key rotation%s: %d artifacts, %d rotated (%d secrets), %d failures",
        " (dry run)" if dry_run else "", report.artifacts, report.rotated, report.secrets, len(report.failures),
    )
    return report


@sensitive_variables("values")
def _rotate_row(pk: int, report: RotationReport, *, dry_run: bool) -> None:
    """One artifact, in its own short transaction under a row lock."""
    with transaction.atomic():
        cred = UserCredential.objects.select_for_update().select_related("tenant").filter(pk=pk).first()
        if cred is None:  # deleted meanwhile
            return
        report.artifacts += 1
        values: dict[str, str] = {}
        problems: list[str] = []
        for field_name in ("password", "deployed_password", "refresh_token"):
            try:
                value = getattr(cred, field_name)
            except CredentialError as exc:
                problems.append(exc.message)
                continue
            if value is not None:
                values[field_name] = value
        if problems:
            report.failures.extend(problems)
            if not dry_run:
                UserCredential.objects.filter(pk=pk).update(
                    status=CredentialStatus.ERROR, status_detail=" ".join(problems)
                )
            return
        if not dry_run:
            update: dict[str, object] = dict(values)
            if cred.status == CredentialStatus.ERROR:
                # The keys are right again: the artifact is back to its settled state.
                update.update(status=settled_status(cred), status_detail="")
            # update() re-encrypts with the first key and leaves updated_at alone.
            UserCredential.objects.filter(pk=pk).update(**update)
        report.rotated += 1
        report.secrets += len(values)


def _rotate_token_cache(report: RotationReport) -> None:
    """Cached OAuth2 access tokens and pending PKCE verifiers: re-encrypted, or dropped when no
    key decrypts them (a cache: the next use asks the provider again)."""
    from ...models import OAuth2Authorization, OAuth2Token

    for model, field_name in ((OAuth2Token, "access_token"), (OAuth2Authorization, "code_verifier")):
        for pk in model.objects.order_by("pk").values_list("pk", flat=True).iterator():
            with transaction.atomic():
                row = model.objects.select_for_update().filter(pk=pk).first()
                if row is None:
                    continue
                try:
                    value = getattr(row, field_name)
                except CredentialError:
                    value = None
                if model is OAuth2Authorization and value is None:
                    row.delete()
                    continue
                model.objects.filter(pk=pk).update(**{field_name: value})
                report.secrets += value is not None
