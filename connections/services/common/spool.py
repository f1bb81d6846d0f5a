"""Spool files: a mail or an attachment too big for memory waits in a temporary file."""
from __future__ import annotations

import contextlib
import os


def remove(path: str | None) -> None:
    """Remove a spool file; one already gone is fine (cleanup runs more than once)."""
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
