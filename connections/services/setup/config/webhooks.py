"""The `webhook: {url, secret_env}` key of an inbound connection in configuration as code
(contract, docs/config.md): its validation, plan, write and export.

The secret is read from the named environment variable when the file is applied and
stored encrypted; the file and the export only ever name the variable. A connection
whose entry has no `webhook` key keeps the webhook it has (the admin may manage it).
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Callable, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ....models import InboundConnection, Webhook
from ... import webhooks
from .fields import ENV_NAME, fail
from .plan import SECRET

def _url(url: Any) -> str:
    if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url) or len(url) > 2000:
        raise fail("required: an http:// or https:// URL (at most 2000 characters)")
    return url


def _env(env: Any) -> str:
    if not isinstance(env, str) or not ENV_NAME.fullmatch(env):
        raise fail("required: the name of the environment variable with the signing secret")
    return env


class WebhookEntry(BaseModel):
    """The `webhook:` mapping of an inbound connection."""

    model_config = ConfigDict(extra="forbid")
    url: Annotated[Any, AfterValidator(_url)] = Field(None, validate_default=True)
    secret_env: Annotated[Any, AfterValidator(_env)] = Field(None, validate_default=True)


KEYS = tuple(WebhookEntry.model_fields)


def secret_env_name(tenant_slug: str, connection_name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{tenant_slug}_{connection_name}".upper()).strip("_") + "_HOOK_SECRET"


def validate(err: Callable[[str, str], None], path: str, node: Any) -> dict[str, str] | None:
    """{url, secret_env} of a `webhook:` mapping, or None after reporting errors."""
    if not isinstance(node, dict):
        err(path, "must be a mapping {url: ..., secret_env: ...}")
        return None
    try:
        return WebhookEntry.model_validate(node).model_dump()
    except ValidationError as exc:
        for error in exc.errors():
            unknown = error["type"] == "extra_forbidden"
            err(f"{path}.{error['loc'][0]}", f"unknown key (allowed: {', '.join(KEYS)})" if unknown else error["msg"])
        return None


def plan(*, errors: list[str], path: str, spec: dict[str, str], current: InboundConnection | None,
         environ: Mapping[str, str]) -> tuple[dict[str, tuple[Any, Any]], str | None]:
    """(changed fields, secret) — the secret is None when it is unchanged."""
    secret = environ.get(spec["secret_env"])
    if not secret:
        errors.append(f"{path}.secret_env: the environment variable {spec['secret_env']} is not set or empty")
        return {}, None
    hook = Webhook.objects.filter(connection=current).first() if current is not None else None
    if hook is None:
        return {"webhook": (None, {"url": spec["url"], "secret_env": spec["secret_env"]})}, secret
    diff: dict[str, tuple[Any, Any]] = {}
    if hook.url != spec["url"]:
        diff["webhook.url"] = (hook.url, spec["url"])
    if hook.secret_env != spec["secret_env"]:
        diff["webhook.secret_env"] = (hook.secret_env, spec["secret_env"])
    if hook.secret != secret:
        diff["webhook.secret"] = (SECRET, SECRET)
    return diff, (secret if diff else None)


def write(*, connection: InboundConnection, spec: dict[str, str], secret: str) -> Webhook:
    hook = Webhook.objects.filter(connection=connection).first() or Webhook(
        tenant_id=connection.tenant_id, connection=connection)
    hook.url, hook.secret_env, hook.secret = spec["url"], spec["secret_env"], secret
    return webhooks.save_webhook(webhook=hook)


def export(connection: InboundConnection) -> dict[str, str] | None:
    hook = Webhook.objects.filter(connection=connection).first()
    if hook is None:
        return None
    return {"url": hook.url,
            "secret_env": hook.secret_env or secret_env_name(connection.tenant.slug, connection.name)}
