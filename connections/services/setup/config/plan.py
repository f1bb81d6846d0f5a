"""The plan of an apply: the validated entries of the file (`Item`), the changes that make the
database match them (`Change`, `Plan`), and the helpers that compute a change of one row."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models

from ....models import InboundConnection, UserCredential
from . import schedules
from .fields import STATE_FIELDS, Entry, to_yaml

SECRET = object()  # stands for a password in a change; printed as "(secret)"


@dataclass
class Item:
    """One validated entry of the file: model field values and where it is in the file."""

    path: str
    name: str
    values: dict[str, Any]
    given: set[str]  # YAML keys present in the file
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TenantItem(Item):
    credentials: list[Item] = field(default_factory=list)
    proxies: list[Item] = field(default_factory=list)
    outbound: list[Item] = field(default_factory=list)
    inbound: list[Item] = field(default_factory=list)


def check_duplicate(v, seen: dict[str, str], item: Item, what: str) -> None:
    if not item.name:
        return
    if item.name in seen:
        v.err(f"{item.path}.name", f"duplicate {what} {item.name!r} (also at {seen[item.name]})")
    seen.setdefault(item.name, item.path)


@dataclass
class Change:
    action: str  # create | update | delete | deploy
    kind: str  # tenant | credential | proxy | outbound | inbound | alerts
    tenant: str
    name: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # YAML key -> (old, new)

    @property
    def label(self) -> str:
        return self.tenant if self.kind == "tenant" else f"{self.tenant}/{self.name}"

    def __str__(self) -> str:
        head = f"{self.action} {self.kind} {self.label}"
        if self.action == "update":
            parts = [f"{k}: {_show(old)} -> {_show(new)}" for k, (old, new) in self.fields.items()]
            return f"{head}: " + "; ".join(parts)
        if self.action == "create":
            return f"{head} (" + ", ".join(f"{k}={_show(v)}" for k, (_, v) in self.fields.items()) + ")"
        return head


def _show(value: Any) -> str:
    if value is SECRET:
        return "(secret)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"<{len(value.splitlines())} lines>" if "\n" in value else repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    applied: bool = False

    @property
    def empty(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        out = [f"note: {n}" for n in self.notes]
        if not self.changes:
            out.append("No changes.")
            return out
        out += [str(c) for c in self.changes]
        count = len(self.changes)
        noun = f"{count} change{'s' if count != 1 else ''}"
        out.append(f"Dry run: {noun}, nothing written." if self.dry_run else f"{noun} applied.")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def model_errors(errors: list[str], item: Item, instance: models.Model, entry: type[Entry]) -> None:
    """Run the model's own validation (field validators and clean()) on the values to write."""
    to_key = entry.field_keys()
    exclude = {"tenant", *STATE_FIELDS} - {"password"}
    if isinstance(instance, UserCredential):
        exclude.add("password")
    try:
        instance.full_clean(exclude=sorted(exclude), validate_unique=False, validate_constraints=False)
    except DjangoValidationError as exc:
        for fname, messages in exc.message_dict.items():
            key = to_key.get(fname)
            where = f"{item.path}.{key}" if key else item.path
            if key and any(e.startswith(f"{where}: ") or e.startswith(f"{where}.") for e in errors):
                continue  # already reported by the file checks
            for message in messages:
                errors.append(f"{where}: {message}")


def diff(instance: models.Model, values: Mapping[str, Any], entry: type[Entry]) -> dict[str, tuple[Any, Any]]:
    """YAML key -> (old, new) for the fields that change (schedule as one key)."""
    to_key, keys = entry.field_keys(), {k.field: k for k in entry.keys()}
    changed: dict[str, tuple[Any, Any]] = {}
    sched_changed = False
    for fname, new in values.items():
        old = getattr(instance, fname)
        if old == new:
            continue
        if fname in schedules.SCHEDULE_FIELDS:
            sched_changed = True
            continue
        key = keys.get(fname)
        changed[to_key[fname]] = (to_yaml(key, old), to_yaml(key, new)) if key else (old, new)
    if sched_changed:
        probe = InboundConnection(**{f: getattr(instance, f) for f in schedules.SCHEDULE_FIELDS})
        for fname in schedules.SCHEDULE_FIELDS:
            if fname in values:
                setattr(probe, fname, values[fname])
        changed["schedule"] = (schedules.to_yaml(instance), schedules.to_yaml(probe))
    return changed


def created(values: Mapping[str, Any], entry: type[Entry]) -> dict[str, tuple[Any, Any]]:
    """YAML key -> (None, value) of a row to create."""
    keys = {k.field: k for k in entry.keys()}
    return {keys[f].key: (None, to_yaml(keys[f], v)) for f, v in values.items() if f in keys}


def changed_fields(current: models.Model, values: Mapping[str, Any]) -> list[str]:
    return [f for f, v in values.items() if getattr(current, f) != v]


def copy(instance: models.Model, values: Mapping[str, Any]) -> models.Model:
    """A copy of `instance` (or the new instance itself) with `values` set: the row to write."""
    clone = _clone(instance) if instance.pk is not None else instance
    for fname, value in values.items():
        setattr(clone, fname, value)
    return clone


def _clone(instance: models.Model) -> models.Model:
    clone = type(instance)()
    clone.__dict__.update({k: v for k, v in instance.__dict__.items() if k != "_state"})
    clone._state.adding = False
    clone._state.db = instance._state.db
    return clone


def index(qs: models.QuerySet) -> dict[int, dict[str, Any]]:
    """tenant id -> name -> row."""
    out: dict[int, dict[str, Any]] = {}
    for obj in qs:
        out.setdefault(obj.tenant_id, {})[obj.name] = obj
    return out
