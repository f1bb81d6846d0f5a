"""PEM text as TenantMail stores it, and `trusted_ca_file` in configuration files.

Stored PEM has one line end (LF), no trailing blanks, and ends with one newline: pasted
Windows text (CRLF) does not end up exported as a quoted string full of "\\r\\n", and the
YAML export can write it as a block scalar.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from ...validators import normalise_pem

CA_FILE_KEY = "trusted_ca_file"
__all__ = ["CA_FILE_KEY", "normalise_pem", "read_ca_file"]


def read_ca_file(*, mapping: Mapping[str, Any], values: dict[str, Any], path: str, base_dir: Path | None,
                 err: Callable[[str, str], None]) -> None:
    """`trusted_ca_file: path` of a connection entry: read now (at apply time) into trusted_ca
    (and a `trusted_ca` given inline normalised as it is stored).

    A relative path is relative to the configuration file's folder (`base_dir`; the current
    folder for stdin)."""
    if values.get("trusted_ca"):
        values["trusted_ca"] = normalise_pem(values["trusted_ca"])
    if CA_FILE_KEY not in mapping:
        return
    where = f"{path}.{CA_FILE_KEY}"
    if mapping.get("trusted_ca") not in (None, ""):
        err(where, "give trusted_ca or trusted_ca_file, not both")
        return
    name = mapping[CA_FILE_KEY]
    if not isinstance(name, str) or not name.strip():
        err(where, f"expected the path of a PEM file, got {name!r}")
        return
    file = Path(name).expanduser()
    if not file.is_absolute() and base_dir is not None:
        file = base_dir / file
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        err(where, f"cannot read {file}: {exc.strerror or exc}")
        return
    except UnicodeDecodeError:
        err(where, f"{file} is not a PEM text file")
        return
    if not text.strip():
        err(where, f"{file} is empty; expected one or more PEM certificates")
        return
    values["trusted_ca"] = normalise_pem(text)
