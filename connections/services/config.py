"""Configuration as code: export tenants, credentials and connections to YAML and apply a file.

The schema (docs/config.md) is a contract that operators script against: the key names and
their values are kept exactly; new keys may be added.

`apply` works in three steps:
1. validate the whole document (structure, types, allowed values, duplicates, environment
   variables, what a prune would delete) and collect every error with its place in the file;
2. compute the plan: the creates, updates, deletes and deploys that make the database match;
3. unless it is a dry run, write the plan in one transaction.
Nothing is written when any error is found. Secrets never appear in the plan, in errors or
in the exported file: a password is referenced by the name of an environment variable.
"""
from __future__ import annotations

import difflib
import os
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from croniter import croniter
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, models, transaction

from ..errors import ConfigurationError, NotFound, TenantMailError, ValidationError, no_tenant
from ..models import (
    Authentication,
    BodyCharset,
    BodyType,
    CredentialStatus,
    InboundConnection,
    OutboundConnection,
    OutboxMessage,
    PostProcessing,
    Protection,
    Protocol,
    ScheduleKind,
    Selection,
    StoredMessage,
    Tenant,
    TransferEncoding,
    UserCredential,
)
from ..models.credentials import PASSWORD_MAX_LENGTH
from . import config_webhooks
from .common import pem
from .monitoring import alerts_config
from .oauth2 import config as oauth2_config
from .proxies import config as proxy_config

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = model value (0 = Monday)
POP3_POST_PROCESSING = (PostProcessing.DELETE.value, PostProcessing.KEEP.value)
ARCHIVE_POST_PROCESSING = (PostProcessing.MOVE.value, PostProcessing.MOVE_AND_MARK_READ.value)
IMAP_ONLY_KEYS = ("folder", "selection", "push")


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


# --------------------------------------------------------------------------- the schema

@dataclass(frozen=True)
class Key:
    """One YAML key mapped to one model field."""

    key: str
    field: str
    kind: str  # "str" | "int" | "bool"
    required: bool = False
    nullable: bool = False  # YAML null <-> "" (text) or None (integer)
    choices: tuple[str, ...] | None = None


_CONNECTION_KEYS = (
    Key("name", "name", "str", required=True),
    Key("host", "host", "str", required=True),
    Key("port", "port", "int", nullable=True),
    Key("protection", "protection", "str", choices=tuple(Protection.values)),
    Key("authentication", "authentication", "str", choices=tuple(Authentication.values)),
    Key("credential", "credential_name", "str", nullable=True),
    Key("timeout", "timeout", "int"),
    Key("verify_certificate", "verify_certificate", "bool"),
    Key("trusted_ca", "trusted_ca", "str", nullable=True),
    Key("allow_plain_without_tls", "allow_plain_without_tls", "bool"),
    Key("sasl_mechanism", "sasl_mechanism", "str", nullable=True, choices=("", "xoauth2", "oauthbearer")),
)

TENANT_KEYS = (
    Key("slug", "slug", "str", required=True),
    Key("name", "name", "str", required=True),
    Key("active", "active", "bool"),
)
TENANT_LISTS = ("credentials", "proxies", "outbound", "inbound")

CREDENTIAL_KEYS = (
    Key("name", "name", "str", required=True),
    Key("description", "description", "str", nullable=True),
    Key("user", "username", "str", required=True),
)
CREDENTIAL_EXTRA = ("password_env", "deploy")
# Artifact states in which nothing is left to deploy.
SETTLED = (CredentialStatus.DEPLOYED, CredentialStatus.AUTHORIZED, CredentialStatus.UNAUTHORIZED)

OUTBOUND_KEYS = _CONNECTION_KEYS + (
    Key("from", "default_from", "str", required=True),
    Key("reply_to", "default_reply_to", "str", nullable=True),
    Key("max_per_session", "max_per_session", "int"),
    Key("rate_limit_per_minute", "rate_limit_per_minute", "int", nullable=True),
    Key("enabled", "enabled", "bool"),
    # Receiver attributes and crash recovery (issue 19; services/outbound/attributes.py).
    Key("to", "default_to", "str", nullable=True),
    Key("cc", "default_cc", "str", nullable=True),
    Key("bcc", "default_bcc", "str", nullable=True),
    Key("subject", "default_subject", "str", nullable=True),
    Key("body_type", "body_type", "str", nullable=True, choices=tuple(BodyType.values)),
    Key("body_charset", "body_charset", "str", choices=tuple(BodyCharset.values)),
    Key("transfer_encoding", "transfer_encoding", "str", choices=tuple(TransferEncoding.values)),
    Key("resend_uncertain", "resend_uncertain", "bool"),
    Key("keep_sent_days", "keep_sent_days", "int", nullable=True),
)

INBOUND_KEYS = (
    Key("name", "name", "str", required=True),
    Key("protocol", "protocol", "str", choices=(Protocol.IMAP.value, Protocol.POP3.value)),
) + _CONNECTION_KEYS[1:] + (
    Key("folder", "folder", "str"),
    Key("selection", "selection", "str", choices=tuple(Selection.values)),
    Key("max_messages", "max_messages", "int"),
    Key("max_message_size", "max_message_size", "int"),
    Key("post_processing", "post_processing", "str", choices=tuple(PostProcessing.values)),
    Key("archive_folder", "archive_folder", "str", nullable=True),
    Key("push", "push", "bool"),
    # "schedule" is handled apart: one key, several model fields.
    Key("timezone", "timezone", "str"),
    Key("lock_timeout", "lock_timeout", "int"),
    Key("enabled", "enabled", "bool"),
    Key("keep_days", "keep_days", "int", nullable=True),
    # "webhook" is handled apart (services.config_webhooks): a mapping {url, secret_env}.
)
SCHEDULE_FIELDS = (
    "schedule_kind", "schedule_every", "schedule_weekdays", "schedule_start_hour",
    "schedule_end_hour", "schedule_cron",
)

# Connection fields behind the one `proxy:` key (a profile name or an inline proxy).
PROXY_FIELDS = (*proxy_config.INLINE_FIELDS, "proxy_profile")

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


def _model_default(model: type[models.Model], name: str) -> Any:
    f = model._meta.get_field(name)
    if f.has_default():
        return f.get_default()
    if f.null:
        return None
    return "" if isinstance(f, (models.CharField, models.TextField)) else None


def _to_yaml(key: Key, value: Any) -> Any:
    if key.nullable and value in ("", None):
        return None
    return pem.normalise_pem(value) if key.field == "trusted_ca" else value


# --------------------------------------------------------------------------- export

def password_env_name(tenant_slug: str, credential_name: str) -> str:
    """The environment variable that holds a credential's password, e.g. ACME_MAILBOX_PASSWORD."""
    raw = f"{tenant_slug}_{credential_name}_PASSWORD".upper()
    name = re.sub(r"[^A-Z0-9]+", "_", raw).strip("_")
    return f"_{name}" if name[:1].isdigit() else name


def _has_undeployed_changes(cred: UserCredential) -> bool:
    if cred.decryption_problem():
        # The passwords cannot be compared without the key (their ciphertexts always differ):
        # trust the status the artifact had, so an export under a missing key does not
        # silently turn `deploy: true` into `deploy: false`.
        return not cred.is_deployed or cred.username != cred.deployed_username or cred.status == CredentialStatus.STORED
    return cred.has_undeployed_changes


def _schedule_to_yaml(conn: InboundConnection) -> dict[str, Any]:
    if conn.schedule_kind == ScheduleKind.CRON:
        return {"cron": conn.schedule_cron}
    if conn.schedule_kind == ScheduleKind.WEEKLY:
        days = [WEEKDAYS[int(d)] for d in conn.schedule_weekdays.split(",") if d.strip().isdigit()]
        return {
            "weekdays": days,
            "between": [f"{conn.schedule_start_hour:02d}:00", f"{conn.schedule_end_hour:02d}:00"],
            "every": conn.schedule_every,
        }
    return {"every": conn.schedule_every}


def export(*, tenant_slugs: Sequence[str] | None = None) -> dict[str, Any]:
    """The configuration of the given tenants (all when None) as a plain document."""
    tenants = Tenant.objects.order_by("slug")
    if tenant_slugs:
        tenants = tenants.filter(slug__in=list(tenant_slugs))
        missing = sorted(set(tenant_slugs) - set(tenants.values_list("slug", flat=True)))
        if missing:
            raise NotFound(
                " ".join(no_tenant(s) for s in missing),
                hint="list the tenants with `python manage.py export_config` (no arguments)",
            )
    tenants = list(tenants)
    ids = [t.pk for t in tenants]
    creds: dict[int, list[UserCredential]] = {i: [] for i in ids}
    outs: dict[int, list[OutboundConnection]] = {i: [] for i in ids}
    ins: dict[int, list[InboundConnection]] = {i: [] for i in ids}
    for c in UserCredential.objects.filter(tenant_id__in=ids).order_by("name"):
        creds[c.tenant_id].append(c)
    for o in OutboundConnection.objects.filter(tenant_id__in=ids).order_by("name"):
        outs[o.tenant_id].append(o)
    for i in InboundConnection.objects.filter(tenant_id__in=ids).order_by("name"):
        ins[i.tenant_id].append(i)

    # The names an applied file gave are written back as they were; the others are derived,
    # avoiding every name already in use.
    used_env: set[str] = {c.password_env for cs in creds.values() for c in cs if c.password_env}
    doc_tenants = []
    for t in tenants:
        entry: dict[str, Any] = {k.key: _to_yaml(k, getattr(t, k.field)) for k in TENANT_KEYS}
        entry["credentials"] = []
        for c in creds[t.pk]:
            env_name = c.password_env or password_env_name(t.slug, c.name)
            suffix = 2
            while not c.password_env and env_name in used_env:  # names differing only in punctuation
                env_name = f"{password_env_name(t.slug, c.name)[:-len('_PASSWORD')]}_{suffix}_PASSWORD"
                suffix += 1
            used_env.add(env_name)
            item = {k.key: _to_yaml(k, getattr(c, k.field)) for k in CREDENTIAL_KEYS}
            item["password_env"] = env_name
            # Only an artifact whose deployed values are its current values: applying the
            # export to the same database then changes nothing.
            item["deploy"] = not _has_undeployed_changes(c)
            entry["credentials"].append(oauth2_config.export(c, item, env_name))
        if proxies := proxy_config.export_profiles(t.pk):
            entry["proxies"] = proxies
        entry["outbound"] = [
            proxy_config.with_proxy(
                {k.key: _to_yaml(k, getattr(o, k.field)) for k in OUTBOUND_KEYS if k.key not in _omitted(o)}, o)
            for o in outs[t.pk]
        ]
        entry["inbound"] = []
        for i in ins[t.pk]:
            item = {}
            for k in INBOUND_KEYS:
                if i.protocol == Protocol.POP3 and k.key in IMAP_ONLY_KEYS or k.key in _omitted(i):
                    continue
                item[k.key] = _to_yaml(k, getattr(i, k.field))
                if k.key == "archive_folder":
                    item["schedule"] = _schedule_to_yaml(i)
            hook = config_webhooks.export(i)
            if hook:
                item["webhook"] = hook
            entry["inbound"].append(proxy_config.with_proxy(item, i))
        alerts = alerts_config.export(tenant=t)
        if alerts is not None:
            entry["alerts"] = alerts
        doc_tenants.append(entry)
    return {"tenants": doc_tenants}


def _omitted(connection) -> set[str]:
    """Optional keys left out of the export while unused (files without OAuth2 stay as they were)."""
    return set() if connection.sasl_mechanism else {"sasl_mechanism"}


class _FlowMap(dict):
    """A mapping written on one line ({every: 300}), as in the documented schema."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None  # PEM blocks stay readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(
    _FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True)
)


def dump(document: Mapping[str, Any]) -> str:
    """YAML text of a document from `export` (schedules on one line, PEM as blocks)."""
    def prepare(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            out = {k: prepare(v, k) for k, v in node.items()}
            return _FlowMap(out) if key in ("schedule", "webhook") else out
        if isinstance(node, list):
            return [prepare(v) for v in node]
        return node

    return yaml.dump(
        prepare(dict(document)), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
        allow_unicode=True, width=100,
    )


# --------------------------------------------------------------------------- loading

class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice in one mapping", key_node.start_mark
            )
        seen[key] = key_node.start_mark
    mapping = _Mapping(loader.construct_mapping(node, deep=deep))
    mapping.line = node.start_mark.line + 1
    mapping.lines = {k: mark.line + 1 for k, mark in seen.items()}
    return mapping


class _Mapping(dict):
    """A mapping from the file that remembers the line of each key (for error messages)."""

    line: int = 0
    lines: dict[Any, int] = {}


def line_of(document: Any, error: str) -> int | None:
    """The line in the file of the place an error names ("tenants[0].inbound[1].port: ..."), if known."""
    place = error.split(": ", 1)[0]
    if not place.startswith("tenants"):  # "(file)", or a YAML syntax error that says its line
        return None
    tokens = [int(t) if t.isdigit() else t for t in re.split(r"[\[\].]+", place) if t]
    node, line = document, None
    for token in tokens:
        if isinstance(node, _Mapping) and isinstance(token, str):
            if token not in node.lines:
                return line or node.line or None  # a required key that is missing: its mapping
            line = node.lines[token]
            node = node.get(token)
        elif isinstance(node, list) and isinstance(token, int) and 0 <= token < len(node):
            node = node[token]
            if isinstance(node, _Mapping):
                line = node.line
        else:
            break
    return line


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(text: str) -> Any:
    """Parse YAML text; a syntax error becomes a ConfigValidationError with the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "the file"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigValidationError([f"{where}: not valid YAML: {problem}"]) from None


# --------------------------------------------------------------------------- the plan

@dataclass
class Change:
    action: str  # create | update | delete | deploy
    kind: str  # tenant | credential | outbound | inbound
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


_SECRET = object()  # stands for a password in a change; printed as "(secret)"


def _show(value: Any) -> str:
    if value is _SECRET:
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


# --------------------------------------------------------------------------- validation

_TYPE_NAMES = {"str": "a string", "int": "an integer", "bool": "true or false"}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, bool)


def _unknown_key_error(path: str, key: Any, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
    return f"{path}.{key}: unknown key{hint}"


@dataclass
class _Item:
    """One validated entry of the file: model field values and where it is in the file."""

    path: str
    name: str
    values: dict[str, Any]
    given: set[str]  # YAML keys present in the file
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _TenantItem(_Item):
    credentials: list[_Item] = field(default_factory=list)
    proxies: list[_Item] = field(default_factory=list)
    outbound: list[_Item] = field(default_factory=list)
    inbound: list[_Item] = field(default_factory=list)


class _Validator:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def mapping(self, path: str, node: Any, allowed: Sequence[str]) -> dict | None:
        if not isinstance(node, dict):
            self.err(path, f"expected a mapping of keys, got {_kind_of(node)}")
            return None
        for k in node:
            if k not in allowed:
                self.errors.append(_unknown_key_error(path, k, allowed))
        return node

    def keys(self, path: str, node: dict, keys: Sequence[Key], model: type[models.Model]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for k in keys:
            where = f"{path}.{k.key}"
            if k.key not in node:
                if k.required:
                    self.err(where, "required")
                else:
                    values[k.field] = _model_default(model, k.field)
                continue
            v = node[k.key]
            if k.key == "protection" and v is False:
                v = "off"  # YAML 1.1 reads an unquoted `off` as false
            if v is None:
                if k.nullable:
                    values[k.field] = None if k.kind == "int" else ""
                else:
                    self.err(where, f"must not be null; expected {_TYPE_NAMES[k.kind]}")
                continue
            if not _type_ok(k.kind, v):
                self.err(where, f"expected {_TYPE_NAMES[k.kind]}, got {_kind_of(v)} {v!r}")
                continue
            if k.choices is not None and v not in k.choices:
                self.err(where, f"{v!r} is not one of {', '.join(k.choices)}")
                continue
            if k.kind == "str" and k.required and not v.strip():
                self.err(where, "must not be empty")
                continue
            values[k.field] = v
        return values

    def items(self, path: str, node: Any) -> list:
        if node is None:
            return []
        if not isinstance(node, list):
            self.err(path, f"expected a list, got {_kind_of(node)}")
            return []
        return node


def _kind_of(v: Any) -> str:
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


def _parse_hour(v: Any, *, end: bool) -> int | None:
    if not isinstance(v, str):
        return None
    m = re.fullmatch(r"(\d{1,2}):00", v.strip())
    if not m:
        return None
    hour = int(m.group(1))
    return hour if (1 if end else 0) <= hour <= (24 if end else 23) else None


def _schedule(v: _Validator, path: str, node: Any) -> dict[str, Any]:
    """Model schedule fields from {every}, {cron} or {weekdays, between[, every]}."""
    allowed = ("every", "cron", "weekdays", "between")
    m = v.mapping(path, node, allowed)
    if m is None:
        return {}
    out: dict[str, Any] = {}
    forms = [k for k in ("cron", "weekdays") if k in m]
    if "cron" in m and ("every" in m or "weekdays" in m or "between" in m):
        v.err(path, "give either {cron: ...}, {every: N} or {weekdays: [...], between: [...], every: N}")
        return {}
    if not forms and "every" not in m:
        v.err(path, "expected {every: seconds}, {cron: \"...\"} or {weekdays: [...], between: [...]}")
        return {}
    if "every" in m:
        every = m["every"]
        if not _type_ok("int", every) or every < 1:
            v.err(f"{path}.every", f"expected a whole number of seconds >= 1, got {every!r}")
        else:
            out["schedule_every"] = every
    if "cron" in m:
        expr = m["cron"]
        if not isinstance(expr, str) or not croniter.is_valid(expr) or len(expr) > 120:
            v.err(f"{path}.cron", f"{expr!r} is not a valid cron expression (five fields, e.g. \"*/5 * * * *\")")
        else:
            out.update(schedule_kind=ScheduleKind.CRON.value, schedule_cron=expr)
        return out
    if "weekdays" in m or "between" in m:
        days = m.get("weekdays", list(WEEKDAYS[:5]))
        if not isinstance(days, list) or not days or not all(d in WEEKDAYS for d in days):
            v.err(f"{path}.weekdays", f"expected a list of {', '.join(WEEKDAYS)}, got {days!r}")
        elif len(set(days)) != len(days):
            v.err(f"{path}.weekdays", "a day is given twice")
        else:
            out["schedule_weekdays"] = ",".join(str(WEEKDAYS.index(d)) for d in sorted(days, key=WEEKDAYS.index))
        between = m.get("between", ["00:00", "24:00"])
        if not isinstance(between, list) or len(between) != 2:
            v.err(f"{path}.between", f"expected [\"HH:00\", \"HH:00\"], got {between!r}")
        else:
            start, end = _parse_hour(between[0], end=False), _parse_hour(between[1], end=True)
            if start is None or end is None:
                v.err(f"{path}.between", f"expected whole hours as quoted strings like [\"08:00\", \"18:00\"], "
                      f"got {between!r}")
            elif start >= end:
                v.err(f"{path}.between", f"the start {between[0]} must be before the end {between[1]}")
            else:
                out.update(schedule_start_hour=start, schedule_end_hour=end)
        out["schedule_kind"] = ScheduleKind.WEEKLY.value
        if "every" not in m:
            out["schedule_every"] = _model_default(InboundConnection, "schedule_every")
        return out
    out["schedule_kind"] = ScheduleKind.INTERVAL.value
    return out


def _validate_document(document: Any, base_dir: Path | None = None) -> tuple[list[_TenantItem], list[str]]:
    v = _Validator()
    root = v.mapping("(file)", document, ("tenants",)) if document is not None else None
    if document is None:
        v.err("(file)", "the file is empty; expected `tenants:` with a list of tenants")
    if root is None:
        return [], v.errors
    if "tenants" not in root:
        v.err("tenants", "required")
    tenants: list[_TenantItem] = []
    seen_slugs: dict[str, str] = {}
    for ti, tnode in enumerate(v.items("tenants", root.get("tenants"))):
        tpath = f"tenants[{ti}]"
        tmap = v.mapping(tpath, tnode, [k.key for k in TENANT_KEYS] + list(TENANT_LISTS) + ["alerts"])
        if tmap is None:
            continue
        values = v.keys(tpath, tmap, TENANT_KEYS, Tenant)
        slug = values.get("slug", "")
        if slug:
            if slug in seen_slugs:
                v.err(f"{tpath}.slug", f"duplicate tenant {slug!r} (also at {seen_slugs[slug]})")
            seen_slugs.setdefault(slug, tpath)
        titem = _TenantItem(tpath, slug, values, set(tmap))

        seen: dict[str, str] = {}
        for ci, cnode in enumerate(v.items(f"{tpath}.credentials", tmap.get("credentials"))):
            cpath = f"{tpath}.credentials[{ci}]"
            cmap = v.mapping(cpath, cnode, [k.key for k in CREDENTIAL_KEYS] + list(CREDENTIAL_EXTRA)
                             + list(oauth2_config.YAML_KEYS))
            if cmap is None:
                continue
            cvalues = v.keys(cpath, cmap, CREDENTIAL_KEYS, UserCredential)
            extra: dict[str, Any] = {"deploy": False}
            secret_key = oauth2_config.secret_key(cmap)
            cmap = oauth2_config.parse(v, cpath, cmap, extra)  # OAuth2: client_secret_env is the password_env
            env = cmap.get("password_env")
            if "password_env" not in cmap:
                v.err(f"{cpath}.{secret_key}", "required (the name of the environment variable with the "
                      + ("client secret)" if secret_key != "password_env" else "password)"))
            elif not isinstance(env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", env):
                v.err(f"{cpath}.{secret_key}", f"{env!r} is not an environment variable name")
            else:
                extra["password_env"] = env
            if "deploy" in cmap:
                if not isinstance(cmap["deploy"], bool):
                    v.err(f"{cpath}.deploy", f"expected true or false, got {_kind_of(cmap['deploy'])} {cmap['deploy']!r}")
                else:
                    extra["deploy"] = cmap["deploy"]
            item = _Item(cpath, cvalues.get("name", ""), cvalues, set(cmap), extra)
            _check_duplicate(v, seen, item, "credential")
            titem.credentials.append(item)

        titem.proxies = proxy_config.validate_profiles(v, tpath, tmap.get("proxies"))
        seen = {}
        for oi, onode in enumerate(v.items(f"{tpath}.outbound", tmap.get("outbound"))):
            opath = f"{tpath}.outbound[{oi}]"
            omap = v.mapping(opath, onode, [k.key for k in OUTBOUND_KEYS] + [pem.CA_FILE_KEY, "proxy"])
            if omap is None:
                continue
            item = _Item(opath, "", v.keys(opath, omap, OUTBOUND_KEYS, OutboundConnection), set(omap))
            pem.read_ca_file(mapping=omap, values=item.values, path=opath, base_dir=base_dir, err=v.err)
            proxy_values, item.extra["proxy"] = proxy_config.connection_proxy(v, opath, omap)
            item.values.update(proxy_values)
            item.name = item.values.get("name", "")
            _check_duplicate(v, seen, item, "outbound connection")
            titem.outbound.append(item)

        seen = {}
        for ii, inode in enumerate(v.items(f"{tpath}.inbound", tmap.get("inbound"))):
            ipath = f"{tpath}.inbound[{ii}]"
            imap_ = v.mapping(ipath, inode, [k.key for k in INBOUND_KEYS] + ["schedule", pem.CA_FILE_KEY, "webhook", "proxy"])
            if imap_ is None:
                continue
            values = v.keys(ipath, imap_, INBOUND_KEYS, InboundConnection)
            pem.read_ca_file(mapping=imap_, values=values, path=ipath, base_dir=base_dir, err=v.err)
            protocol = values.get("protocol")
            if protocol == Protocol.POP3:
                for k in IMAP_ONLY_KEYS:
                    if k in imap_:
                        v.err(f"{ipath}.{k}", "applies to imap only; remove it for a pop3 connection")
                values.pop("folder", None)
                values.pop("selection", None)
                values.pop("push", None)
                if "post_processing" not in imap_:
                    values["post_processing"] = PostProcessing.KEEP.value  # safe: nothing is lost
                elif values.get("post_processing") not in (None, *POP3_POST_PROCESSING):
                    v.err(f"{ipath}.post_processing",
                          f"{imap_['post_processing']!r} is not one of {', '.join(POP3_POST_PROCESSING)} (pop3)")
            pp = values.get("post_processing")
            if pp in ARCHIVE_POST_PROCESSING and not values.get("archive_folder"):
                v.err(f"{ipath}.archive_folder", f"required when post_processing is {pp}")
            if "timezone" in values:
                try:
                    zoneinfo.ZoneInfo(values["timezone"])
                except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                    v.err(f"{ipath}.timezone", f"{values['timezone']!r} is not a known time zone (e.g. UTC, Europe/Berlin)")
            if "schedule" in imap_:
                values.update(_schedule(v, f"{ipath}.schedule", imap_["schedule"]))
            else:
                values.update(schedule_kind=ScheduleKind.INTERVAL.value,
                              schedule_every=_model_default(InboundConnection, "schedule_every"))
            proxy_values, proxy_name = proxy_config.connection_proxy(v, ipath, imap_)
            values.update(proxy_values)
            item = _Item(ipath, values.get("name", ""), values, set(imap_), {"proxy": proxy_name})
            if "webhook" in imap_:
                item.extra["webhook"] = config_webhooks.validate(v.err, f"{ipath}.webhook", imap_["webhook"])
            _check_duplicate(v, seen, item, "inbound connection")
            titem.inbound.append(item)
        if "alerts" in tmap:  # issue 16: connections/services/monitoring/alerts_config.py
            titem.extra["alerts"] = alerts_config.validate(v, f"{tpath}.alerts", tmap["alerts"])
        tenants.append(titem)
    return tenants, v.errors


def _check_duplicate(v: _Validator, seen: dict[str, str], item: _Item, what: str) -> None:
    if not item.name:
        return
    if item.name in seen:
        v.err(f"{item.path}.name", f"duplicate {what} {item.name!r} (also at {seen[item.name]})")
    seen.setdefault(item.name, item.path)


# --------------------------------------------------------------------------- apply

def _field_to_key(keys: Sequence[Key]) -> dict[str, str]:
    out = {k.field: k.key for k in keys}
    out.update({f: "schedule" for f in SCHEDULE_FIELDS})
    out.update({f: "proxy" for f in proxy_config.INLINE_FIELDS})
    return out


def _model_errors(
    errors: list[str], item: _Item, instance: models.Model, keys: Sequence[Key], skip: Iterable[str] = ()
) -> None:
    """Run the model's own validation (field validators and clean()) on the values to write."""
    to_key = _field_to_key(keys)
    exclude = {"tenant", *STATE_FIELDS, *skip} - {"password"}
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


def _document_order(error: str) -> list:
    """Sort errors as their places appear in the file: tenants[2] before tenants[10]."""
    place = error.split(": ", 1)[0]
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"[\[\].]+", place) if tok]


def _diff(instance: models.Model, values: Mapping[str, Any], keys: Sequence[Key]) -> dict[str, tuple[Any, Any]]:
    """YAML key -> (old, new) for the fields that change (schedule as one key)."""
    to_key = _field_to_key(keys)
    changed: dict[str, tuple[Any, Any]] = {}
    sched_changed = False
    for fname, new in values.items():
        old = getattr(instance, fname)
        if old == new:
            continue
        if fname in SCHEDULE_FIELDS:
            sched_changed = True
            continue
        key = next((k for k in keys if k.field == fname), None)
        changed[to_key[fname]] = (_to_yaml(key, old), _to_yaml(key, new)) if key else (old, new)
    if sched_changed:
        old_sched = _schedule_to_yaml(instance)  # type: ignore[arg-type]
        probe = InboundConnection(**{f: getattr(instance, f) for f in SCHEDULE_FIELDS})
        for fname in SCHEDULE_FIELDS:
            if fname in values:
                setattr(probe, fname, values[fname])
        changed["schedule"] = (old_sched, _schedule_to_yaml(probe))
    return changed


def apply(
    document: Any,
    *,
    dry_run: bool = False,
    prune: bool = False,
    environ: Mapping[str, str] | None = None,
    user: Any = None,
    base_dir: Path | None = None,
) -> Plan:
    """Make the database match `document` (parsed YAML); return the plan of changes.
    `base_dir`: the folder relative `trusted_ca_file` paths are read from (the file's).

    Raises ConfigValidationError, listing every problem, before anything is written.
    """
    environ = os.environ if environ is None else environ
    tenants, errors = _validate_document(document, base_dir)
    if errors or dry_run:
        # With errors, still run the database checks (read only) so that every error is listed.
        plan = _plan_and_write(tenants, prune=prune, environ=environ, user=user, write=False, errors=errors)
        plan.dry_run = True
        return plan
    try:
        with transaction.atomic():
            return _plan_and_write(tenants, prune=prune, environ=environ, user=user, write=True, errors=[])
    except IntegrityError:
        # Someone created or renamed the same rows between our reads and writes.
        raise ConfigurationError(
            "The database changed while the file was being applied; nothing was written.",
            hint="apply the file again",
        ) from None


def _credential_reference(errors: list[str], item: _Item, t: _TenantItem, existing: Mapping[str, Any]) -> None:
    """A connection may only name a credential that exists in its tenant or that the file creates."""
    name = (item.values.get("credential_name") or "").strip()
    if not name or name in existing or name in {c.name for c in t.credentials}:
        return
    hint = [n for n in sorted({*existing, *(c.name for c in t.credentials)}) if n.lower() == name.lower()]
    errors.append(
        f"{item.path}.credential: no credential named {name!r} exists in tenant {t.name!r} or is created by "
        f"this file" + (f" (names are case-sensitive: did you mean {hint[0]!r}?)" if hint else "")
    )


def _plan_and_write(
    tenants: list[_TenantItem], *, prune: bool, environ: Mapping[str, str], user: Any, write: bool,
    errors: list[str],
) -> Plan:
    plan = Plan()
    errors = list(errors)
    slugs = [t.name for t in tenants]
    lock = Tenant.objects.select_for_update() if write else Tenant.objects
    existing_tenants = {t.slug: t for t in lock.filter(slug__in=slugs)}
    tids = [t.pk for t in existing_tenants.values()]
    by_tenant = {
        "credentials": _index(UserCredential.objects.filter(tenant_id__in=tids)),
        "outbound": _index(OutboundConnection.objects.filter(tenant_id__in=tids)),
        "inbound": _index(InboundConnection.objects.filter(tenant_id__in=tids)),
    }

    # ---- compute every change (and the errors only the database can reveal)
    work: list[tuple[str, Any]] = []  # (step, payload) in the order to write
    for t in tenants:
        current = existing_tenants.get(t.name)
        tenant_obj = current or Tenant()
        candidate = _copy(tenant_obj, t.values)
        _model_errors(errors, t, candidate, TENANT_KEYS)
        if current is None:
            plan.changes.append(Change("create", "tenant", t.name, t.name, _created(t.values, TENANT_KEYS)))
            changed = True
        else:
            diff = _diff(current, t.values, TENANT_KEYS)
            if diff:
                plan.changes.append(Change("update", "tenant", t.name, t.name, diff))
            changed = bool(diff)
        work.append(("tenant", (t, candidate, _changed_fields(current, t.values) if current else True)))
        tid = current.pk if current else None
        if t.extra.get("alerts") is not None:
            names = {o.name for o in t.outbound} | set(by_tenant["outbound"].get(tid, {}))
            alerts_config.check_email_via(errors, f"{t.path}.alerts", t.extra["alerts"], names)
            alert_diff = alerts_config.diff(current, t.extra["alerts"])
            if alert_diff:
                plan.changes.append(Change("update", "alerts", t.name, t.name, alert_diff))
                work.append(("alerts", (t.name, t.extra["alerts"])))

        creds = by_tenant["credentials"].get(tid, {})
        for c in t.credentials:
            cur = creds.get(c.name)
            env_name = c.extra.get("password_env", "")
            password = environ.get(env_name) if env_name else None
            # The model's rules first: an environment problem must not hide them.
            obj = _copy(cur or UserCredential(), c.values)
            oauth2_diff = oauth2_config.plan(errors, c.path, cur, obj, c.extra, environ)
            _model_errors(errors, c, obj, CREDENTIAL_KEYS)
            if password == "":
                errors.append(f"{c.path}.password_env: the environment variable {env_name} is empty")
                continue
            if password is not None and len(password) > PASSWORD_MAX_LENGTH:
                errors.append(
                    f"{c.path}.password_env: the password in {env_name} is {len(password)} characters long; "
                    f"at most {PASSWORD_MAX_LENGTH} are allowed"
                )
                continue
            if password is None and env_name:  # (a missing password_env is already reported)
                if cur is None:
                    errors.append(
                        f"{c.path}.password_env: the environment variable {env_name} is not set "
                        f"(it holds the password of the new credential {c.name!r})"
                    )
                    continue
                plan.notes.append(f"{env_name} is not set: the stored password of {t.name}/{c.name} is kept.")
            stored_problem = cur.decryption_problem() if cur is not None else None
            if password is None and stored_problem:
                errors.append(f"{c.path}.password_env: set {env_name}: {stored_problem}")
                continue
            if env_name:
                obj.password_env = env_name
            diff: dict[str, tuple[Any, Any]] = {}
            if cur is None:
                fields = _created(c.values, CREDENTIAL_KEYS)
                fields.update(oauth2_diff)
                fields["password_env"] = (None, env_name)
                fields["password"] = (None, _SECRET)
                plan.changes.append(Change("create", "credential", t.name, c.name, fields))
                changed = True
            else:
                diff = _diff(cur, c.values, CREDENTIAL_KEYS)
                diff.update(oauth2_diff)
                old_env = cur.password_env or password_env_name(t.name, c.name)
                if env_name and env_name != old_env:
                    diff["password_env"] = (old_env, env_name)
                elif env_name:
                    obj.password_env = cur.password_env  # same as exported: not a change
                # Compare with the decrypted stored password: Fernet ciphertexts differ every time.
                if password is not None and (stored_problem or cur.password != password):
                    diff["password"] = (_SECRET, _SECRET)
                if diff:
                    plan.changes.append(Change("update", "credential", t.name, c.name, diff))
                changed = bool(diff)
            # Deploy only when the runtime's values would change: a new description or
            # password_env is no reason for a new version.
            deploy = bool(c.extra.get("deploy")) and (
                cur is None or "user" in diff or "password" in diff or bool(set(diff) & set(oauth2_config.SETTINGS))
                or cur.has_undeployed_changes or cur.status not in SETTLED
            )
            if deploy and user is not None and not _may_deploy(user, tid):
                errors.append(
                    f"{c.path}.deploy: user {user.get_username()!r} may not deploy in tenant {t.name!r} "
                    "(needs the operator or admin role there, or be a superuser)"
                )
            if deploy:
                plan.changes.append(Change("deploy", "credential", t.name, c.name))
            obj_password = password if changed else None
            work.append(("credential", (t.name, obj, obj_password, changed, deploy)))

        profile_names = proxy_config.plan_profiles(t, tid, plan=plan, work=work, errors=errors, prune=prune)
        for kind, items, keys, model in (
            ("outbound", t.outbound, OUTBOUND_KEYS, OutboundConnection),
            ("inbound", t.inbound, INBOUND_KEYS, InboundConnection),
        ):
            conns = by_tenant[kind].get(tid, {})
            for item in items:
                cur = conns.get(item.name)
                obj = _copy(cur or model(), item.values)
                _model_errors(errors, item, obj, keys)
                if kind == "inbound":
                    _inbound_rules(errors, item, obj)
                else:
                    _outbound_rules(errors, item, obj)
                _credential_reference(errors, item, t, creds)
                proxy_change = proxy_config.plan_connection(item, cur, obj, profile_names, errors)
                if cur is None:
                    fields = _created({k: v for k, v in item.values.items() if k not in SCHEDULE_FIELDS}, keys)
                    if kind == "inbound":
                        fields["schedule"] = (None, _schedule_to_yaml(obj))
                    fields.update(proxy_change)
                    plan.changes.append(Change("create", kind, t.name, item.name, fields))
                    work.append((kind, (t.name, obj, True)))  # created: every field
                else:
                    diff = {**_diff(cur, item.values, keys), **proxy_change}
                    if diff:
                        plan.changes.append(Change("update", kind, t.name, item.name, diff))
                    changed = _changed_fields(cur, item.values) + (["proxy_profile"] if proxy_change else [])
                    work.append((kind, (t.name, obj, changed)))
                if item.extra.get("webhook"):
                    diff, secret = config_webhooks.plan(errors=errors, path=f"{item.path}.webhook",
                                                        spec=item.extra["webhook"], current=cur, environ=environ)
                    if diff:
                        plan.changes.append(Change("create" if cur is None else "update", kind, t.name, item.name,
                                                   diff))
                        work.append(("webhook", (obj, item.extra["webhook"], secret)))

        if prune and current is not None:
            named = {
                "credentials": {c.name for c in t.credentials},
                "outbound": {o.name for o in t.outbound},
                "inbound": {i.name for i in t.inbound},
            }
            # Only the lists the tenant entry gives are pruned: a list left out is not managed
            # by this file (write `outbound: []` to delete them all).
            doomed_conns = []
            for kind in ("outbound", "inbound"):
                if kind not in t.given:
                    continue
                for name, obj in sorted(by_tenant[kind].get(tid, {}).items()):
                    if name not in named[kind]:
                        doomed_conns.append((kind, obj))
            _refuse_protected_deletes(errors, t, doomed_conns)
            for kind, obj in doomed_conns:
                plan.changes.append(Change("delete", kind, t.name, obj.name))
                work.append(("delete", obj))
            # The connections there will be after this apply: the file's, where it gives the list.
            remaining = [
                (kind, item.name, item.values.get("credential_name") or "")
                for kind, items in (("outbound", t.outbound), ("inbound", t.inbound)) for item in items
            ] + [
                (kind, obj.name, obj.credential_name)
                for kind in ("outbound", "inbound") if kind not in t.given
                for obj in by_tenant[kind].get(tid, {}).values()
            ]
            for name, obj in sorted(creds.items()):
                if "credentials" in t.given and name not in named["credentials"]:
                    users = sorted(f"{kind} connection {conn!r}" for kind, conn, cred in remaining if cred == name)
                    if users:
                        # As in the admin: an artifact a connection uses is not deleted.
                        errors.append(
                            f"{t.path}.credentials: --prune would delete credential {name!r}, which "
                            f"{', '.join(users)} still use{'s' if len(users) == 1 else ''}; keep it in the "
                            "file, or change their credential first"
                        )
                        continue
                    plan.changes.append(Change("delete", "credential", t.name, name))
                    work.append(("delete", obj))

    if prune:
        others = Tenant.objects.exclude(slug__in=slugs).order_by("slug").values_list("slug", flat=True)
        for slug in others:
            plan.notes.append(f"tenant {slug} is not in the file and is kept (apply_config never deletes tenants).")
    if errors:
        raise ConfigValidationError(sorted(errors, key=_document_order))
    if write and plan.changes:
        _write(work, user=user)
        plan.applied = True
    return plan


def _may_deploy(user: Any, tenant_id: int | None) -> bool:
    """The deploy permission of the --user, checked while planning (before anything is written)."""
    from .access import tenancy

    if tenant_id is None:  # a tenant the file creates: nobody is a member yet
        return tenancy.tenant_ids(user, action="run") is None
    return tenancy.can(user, tenant_id, action="run")


def _inbound_rules(errors: list[str], item: _Item, conn: InboundConnection) -> None:
    """The poller's own rules (the admin form applies the same), unless already reported."""
    from .inbound import checks

    to_key = _field_to_key(INBOUND_KEYS)
    for fname, message in checks.validation_errors(conn).items():
        where = f"{item.path}.{to_key.get(fname, fname)}"
        if not any(e.startswith((f"{where}: ", f"{where}.")) for e in errors):
            errors.append(f"{where}: {message}")


def _outbound_rules(errors: list[str], item: _Item, conn: OutboundConnection) -> None:
    """From and Reply-To must be addresses the sender can use (as the admin form checks)."""
    from .outbound import addresses

    pairs = [("from", conn.default_from), ("reply_to", conn.default_reply_to)]
    for key, field_name in (("to", "default_to"), ("cc", "default_cc"), ("bcc", "default_bcc")):
        pairs += [(key, address) for address in addresses.split_addresses([getattr(conn, field_name) or ""])]
    for key, value in pairs:
        where = f"{item.path}.{key}"
        if not value or any(e.startswith(f"{where}: ") for e in errors):
            continue
        try:
            addresses.parse_address(value, field=key)
        except TenantMailError as exc:
            message = str(exc)
            message = message[len(key) + 2:] if message.startswith(f"{key}: ") else message  # the place says it
            errors.append(f"{where}: {message}")


def _refuse_protected_deletes(errors: list[str], t: _TenantItem, doomed: list[tuple[str, Any]]) -> None:
    """Stored mail and outbox entries are never deleted by a prune: say so before writing."""
    inbound_ids = [o.pk for k, o in doomed if k == "inbound"]
    outbound_ids = [o.pk for k, o in doomed if k == "outbound"]
    with_mail = set(
        StoredMessage.objects.filter(connection_id__in=inbound_ids).values_list("connection_id", flat=True).distinct()
    ) if inbound_ids else set()
    with_outbox = set(
        OutboxMessage.objects.filter(connection_id__in=outbound_ids).values_list("connection_id", flat=True).distinct()
    ) if outbound_ids else set()
    for kind, obj in doomed:
        if (kind == "inbound" and obj.pk in with_mail) or (kind == "outbound" and obj.pk in with_outbox):
            what = "stored messages" if kind == "inbound" else "outbox messages"
            errors.append(
                f"{t.path}.{kind}: --prune would delete {kind} connection {obj.name!r}, which has {what}; "
                f"keep it in the file (enabled: false to stop it) or delete its messages first"
            )


def _write(work: list[tuple[str, Any]], *, user: Any) -> None:
    from .setup import credentials as credential_service

    tenants: dict[str, Tenant] = {}
    deploys: list[UserCredential] = []
    deletes = [payload for step, payload in work if step == "delete"]
    # Deletes first (connections before credentials), so that names are free for re-creates.
    for obj in sorted(deletes, key=lambda o: isinstance(o, UserCredential)):
        obj.delete()
    for step, payload in work:
        if step == "tenant":
            t, obj, changed = payload
            _save(obj, changed)
            tenants[t.name] = obj
        elif step == "credential":
            slug, obj, password, changed, deploy = payload
            obj.tenant = tenants[slug]
            if changed:
                credential_service.save_artifact(credential=obj, password=password)
                oauth2_config.after_save(obj)
            if deploy:
                deploys.append(obj)
        elif step == "alerts":
            alerts_config.save(tenant=tenants[payload[0]], values=payload[1])
        elif step == "proxy":
            slug, obj, changed = payload
            obj.tenant = tenants[slug]
            _save(obj, changed)
        elif step in ("outbound", "inbound"):
            slug, obj, changed = payload
            obj.tenant = tenants[slug]
            proxy_config.link_profile(obj)
            if changed:
                _save(obj, changed)
                if step == "inbound":
                    from .inbound import schedule as schedule_service

                    schedule_service.reschedule(connection=obj)
        elif step == "webhook":
            connection, spec, secret = payload
            config_webhooks.write(connection=connection, spec=spec, secret=secret)
    for step, payload in work:
        if step == "delete_proxy":  # after the connections stopped using it (PROTECT)
            payload.delete()
    for cred in deploys:
        credential_service.deploy(credential_id=cred.pk, user=user, source="apply_config")


def _changed_fields(current: models.Model, values: Mapping[str, Any]) -> list[str]:
    return [f for f, v in values.items() if getattr(current, f) != v]


def _save(obj: models.Model, changed: bool | list[str]) -> None:
    """Create, or write only the changed settings: poll state written meanwhile by a worker
    (last poll, errors, backoff) must not be overwritten with what we read before."""
    if changed is True:
        obj.save()
    elif changed:
        fields = list(changed)
        if any(f.name == "updated_at" for f in obj._meta.concrete_fields):
            fields.append("updated_at")
        obj.save(update_fields=fields)


def _copy(instance: models.Model, values: Mapping[str, Any]) -> models.Model:
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


def _index(qs: models.QuerySet) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for obj in qs:
        out.setdefault(obj.tenant_id, {})[obj.name] = obj
    return out


def _created(values: Mapping[str, Any], keys: Sequence[Key]) -> dict[str, tuple[Any, Any]]:
    to_key = {k.field: k for k in keys}
    return {to_key[f].key: (None, _to_yaml(to_key[f], v)) for f, v in values.items() if f in to_key}
