"""The building blocks of the schema (schema.py): the YAML value types with the contract's
messages, the `Entry` base of every list entry, and the `Key` view of an entry's columns
(YAML key -> model field) used to plan, diff and export.

A YAML key is a pydantic field whose alias is the key and whose name is the model field it
fills; the keys that are not one model field (`schedule`, `proxy`, `webhook`, ...) are `Extra`
and checked by their own part. An absent optional key takes the Django model's default.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Iterable

from django.db import models
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, StrictBool, StrictInt,
                      StrictStr, TypeAdapter)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from ...common import pem
from .errors import kind_of, pydantic_messages


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # default of an absent optional key (a marker, never a YAML value)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")  # an environment variable's name
_NULLABLE = "nullable"
_EXTRA = "extra"


def fail(message: str) -> PydanticCustomError:
    """A validation error whose message is `message` as it is (the contract's wording)."""
    return PydanticCustomError("config", "{message}", {"message": message})


def one_of(values: Iterable[str]) -> AfterValidator:
    """A text that must be one of `values` ("'x' is not one of a, b")."""
    allowed = tuple(values)

    def check(value: str) -> str:
        if value not in allowed:
            raise fail(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


def _not_empty(value: str) -> str:
    if not value.strip():
        raise fail("must not be empty")
    return value


Text = StrictStr
Integer = StrictInt
Flag = StrictBool
RequiredText = Annotated[StrictStr, AfterValidator(_not_empty)]
Extra = Annotated[Any, _EXTRA]  # a key checked by its own part (validation.py, the capabilities)
OffAsText = BeforeValidator(lambda v: "off" if v is False else v)  # YAML 1.1 reads `off` as false


def nullable_text(kind: Any = StrictStr) -> Any:
    """A text that may be YAML null, stored as "" (and exported as null)."""
    return Annotated[kind | None, AfterValidator(lambda v: "" if v is None else v), _NULLABLE]


NullableInteger = Annotated[StrictInt | None, _NULLABLE]  # YAML null stored as None


@dataclass(frozen=True)
class Key:
    """One YAML key mapped to one model field."""

    key: str
    field: str
    nullable: bool = False


class Entry(BaseModel):
    """One mapping of the file: its keys are the fields' aliases; an unknown key is an error."""

    model_config = ConfigDict(extra="forbid")
    django_model: ClassVar[type[models.Model]]
    grouped: ClassVar[dict[str, tuple[str, ...]]] = {}  # YAML key -> the model fields it fills

    @classmethod
    def keys(cls) -> tuple[Key, ...]:
        return _keys(cls)

    @classmethod
    def field_keys(cls) -> dict[str, str]:
        """Model field -> YAML key (the keys that fill several fields included)."""
        out = {k.field: k.key for k in cls.keys()}
        for key, fields in cls.grouped.items():
            out.update({f: key for f in fields})
        return out

    @classmethod
    def allowed(cls) -> list[str]:
        return [f.alias or name for name, f in cls.model_fields.items()]

    @classmethod
    def check(cls, errors: list[str], path: str, node: Any) -> dict[str, Any] | None:
        """Model field values of the entry (its columns); every problem goes to `errors`. The keys
        in error are left out, so that the rest can still be checked against the database.
        None when the entry is not a mapping."""
        if not isinstance(node, dict):
            errors.append(f"{path}: expected a mapping of keys, got {kind_of(node)}")
            return None
        try:
            entry = cls.model_validate(node)
        except PydanticValidationError as exc:
            found = pydantic_messages(exc, path, cls.allowed())
            errors.extend(message for _, message in found)
            return cls._values(node, bad={key for key, _ in found})
        return {k.field: _default(cls, k.field, getattr(entry, k.field)) for k in cls.keys()}

    @classmethod
    def _values(cls, node: dict, *, bad: set[str]) -> dict[str, Any]:
        values = {}
        for k in cls.keys():
            if k.key in bad or (k.key not in node and cls.model_fields[k.field].is_required()):
                continue
            value = _adapter(cls, k.field).validate_python(node[k.key]) if k.key in node else UNSET
            values[k.field] = _default(cls, k.field, value)
        return values


@functools.cache
def _keys(cls: type[Entry]) -> tuple[Key, ...]:
    return tuple(
        Key(f.alias or name, name, _NULLABLE in f.metadata)
        for name, f in cls.model_fields.items() if _EXTRA not in f.metadata
    )


@functools.cache
def _adapter(cls: type[Entry], name: str) -> TypeAdapter:
    info = cls.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, *info.metadata]) if info.metadata else TypeAdapter(info.annotation)


def _default(cls: type[Entry], name: str, value: Any) -> Any:
    return model_default(cls.django_model, name) if value is UNSET else value


# Model fields that are state, not configuration: never exported nor applied.
STATE_FIELDS = {
    "id", "tenant", "created_at", "updated_at",
    "last_test_at", "last_test_ok", "last_test_summary", "last_test_report",
    "next_poll_at", "last_poll_at", "last_poll_ok", "last_error", "consecutive_failures", "backoff_until",
    "imap_uidvalidity", "imap_resync", "imap_uid_next", "imap_uid_scope", "dispatched_due_at",
    "smtp_max_size", "smtp_max_size_seen_at",
    "password", "status", "status_detail", "deployed_username", "deployed_password", "deployed_at",
    "deployed_by", "version", "deployed_oauth2", "refresh_token",
}


def model_default(model: type[models.Model], name: str) -> Any:
    f = model._meta.get_field(name)
    if f.has_default():
        return f.get_default()
    if f.null:
        return None
    return "" if isinstance(f, (models.CharField, models.TextField)) else None


def to_yaml(key: Key, value: Any) -> Any:
    if key.nullable and value in ("", None):
        return None
    return pem.normalise_pem(value) if key.field == "trusted_ca" else value
