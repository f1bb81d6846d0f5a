"""Errors of configuration as code: every problem of a file is one line `place: message`
(`tenants[0].inbound[1].port: expected an integer, got a string '993'`); apply_config
prefixes the file and the line (`FILE:LINE: place: message`, see loading.line_of).

Pydantic reports the problems of the schema (schema.py); `pydantic_messages` words them as
the contract's messages, which tests and operators' scripts match exactly.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Iterable, Sequence

from pydantic import ValidationError as PydanticValidationError

from ....errors import ValidationError

_TYPE_NAMES = {"string_type": "a string", "int_type": "an integer", "bool_type": "true or false"}


class ConfigValidationError(ValidationError):
    """The file was refused; `errors` lists every problem with its place in the file."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        super().__init__(
            f"The configuration has {count} error{'s' if count != 1 else ''}; nothing was changed:\n"
            + "\n".join(f"  {e}" for e in self.errors),
            hint="correct the file and apply it again",
        )


def kind_of(v: Any) -> str:
    """How a YAML value is named in messages: "a string", "an integer", "null", ..."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def unknown_key_error(path: str, key: Any, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
    return f"{path}.{key}: unknown key{hint}"


def pydantic_messages(exc: PydanticValidationError, path: str, allowed: Sequence[str]) -> list[tuple[str, str]]:
    """(YAML key, `place: message`) for each error pydantic found in the mapping at `path`."""
    out = []
    for error in exc.errors():
        key = error["loc"][0] if error["loc"] else ""
        where = f"{path}.{key}" if key != "" else path
        kind, value = error["type"], error.get("input")
        if kind == "extra_forbidden":
            out.append((key, unknown_key_error(path, key, allowed)))
        elif kind == "missing":
            out.append((key, f"{where}: required"))
        elif kind in _TYPE_NAMES and value is None:
            out.append((key, f"{where}: must not be null; expected {_TYPE_NAMES[kind]}"))
        elif kind in _TYPE_NAMES:
            out.append((key, f"{where}: expected {_TYPE_NAMES[kind]}, got {kind_of(value)} {value!r}"))
        else:  # a PydanticCustomError of schema.py: its message is the contract's text
            out.append((key, f"{where}: {error['msg']}"))
    return out


class Report:
    """The errors found so far, and the checks of the document's structure (mappings, lists).
    Passed as `v` to the capability parts (alerts, oauth2, proxies), which add their own."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def mapping(self, path: str, node: Any, allowed: Sequence[str]) -> dict | None:
        if not isinstance(node, dict):
            self.err(path, f"expected a mapping of keys, got {kind_of(node)}")
            return None
        for k in node:
            if k not in allowed:
                self.errors.append(unknown_key_error(path, k, allowed))
        return node

    def items(self, path: str, node: Any) -> list:
        if node is None:
            return []
        if not isinstance(node, list):
            self.err(path, f"expected a list, got {kind_of(node)}")
            return []
        return node


def document_order(error: str) -> list:
    """Sort errors as their places appear in the file: tenants[2] before tenants[10]."""
    place = error.split(": ", 1)[0]
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"[\[\].]+", place) if tok]
