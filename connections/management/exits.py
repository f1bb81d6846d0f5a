"""The exit statuses of every management command, in one place (README, "Exit status").

0 success; 1 failure or problems found; 2 usage error or unknown tenant/connection.
(`apply_config --check` exits 2 when the database differs from the file, as documented.)
"""
from __future__ import annotations

from django.core.management.base import CommandError

from connections.errors import NotFound, TenantMailError

OK, FAILURE, USAGE = 0, 1, 2


def usage_error(message: str) -> CommandError:
    """A wrong argument or option: exit status 2."""
    return CommandError(message, returncode=USAGE)


def command_error(exc: TenantMailError, *, suffix: str = "", usage: tuple[type, ...] = ()) -> CommandError:
    """A TenantMailError as the command's error: 2 for an unknown tenant or connection (or one
    of the `usage` classes: errors in the command's own arguments), else 1."""
    return CommandError(f"{exc}{suffix}", returncode=USAGE if isinstance(exc, (NotFound, *usage)) else FAILURE)
