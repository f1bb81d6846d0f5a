"""Exporting a connection's stored mails as .eml files (the `export_messages` command)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from django.core.files.storage import default_storage

from ...models import StoredMessage
from .fetched import CHUNK


@dataclass
class ExportResult:
    written: int
    bytes: int
    missing: list[int]


def export_raw(*, connection_id: int, out_dir: str) -> ExportResult:
    """Write every stored mail of a connection as `<id>.eml` (its raw bytes, streamed)."""
    os.makedirs(out_dir, exist_ok=True)
    result = ExportResult(written=0, bytes=0, missing=[])
    rows = StoredMessage.objects.filter(connection_id=connection_id).order_by("pk").values_list("pk", "raw")
    for pk, name in rows.iterator(chunk_size=2000):
        target = os.path.join(out_dir, f"{pk}.eml")
        try:
            with default_storage.open(name, "rb") as src, open(target + ".part", "wb") as dst:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    dst.write(chunk)
                    result.bytes += len(chunk)
        except FileNotFoundError:
            result.missing.append(pk)
            continue
        os.replace(target + ".part", target)
        result.written += 1
    return result
