"""Configuration as code for the OAuth2 credential kinds: their keys of a `credentials:` entry.

    - name: m365-app
      kind: oauth2_client_credentials        # default: user_credentials (user + password_env)
      user: orders@acme.example
      token_url: https://login.example/oauth2/v2.0/token
      client_id: 0a1b2c3d
      client_secret_env: ACME_M365_SECRET
      scope: "https://outlook.office365.com/.default"
    - name: gmail-support
      kind: oauth2_authorization_code
      provider: google                       # microsoft (+ directory) | google | generic
      user: support@acme.example
      client_id: 1234.apps.example
      client_secret_env: ACME_GOOGLE_SECRET
      scope: "https://mail.google.com/"
      refresh_token_env: ACME_GOOGLE_REFRESH # optional: import an existing grant

The client secret is stored like a password (the artifact's `password`, its variable in
`password_env`); export writes `client_secret_env` / `refresh_token_env`, never a value.
"""
from __future__ import annotations

from typing import Any, Mapping

from ....models import OAUTH2_KINDS, CredentialKind, UserCredential
from ...oauth2 import providers
from .fields import ENV_NAME, Entry, Extra

MODEL_FIELDS = ("kind", "oauth2", "refresh_token_env")  # set by this module, not by Keys
SETTINGS = ("token_url", "client_id", "scope", "provider", "directory", "issuer", "authorization_url")
class OAuth2Keys(Entry):
    """The OAuth2 keys of a credential entry (after its own keys), checked by `parse`."""

    kind: Extra = None
    client_secret_env: Extra = None
    refresh_token_env: Extra = None
    token_url: Extra = None
    client_id: Extra = None
    scope: Extra = None
    provider: Extra = None
    directory: Extra = None
    issuer: Extra = None
    authorization_url: Extra = None


YAML_KEYS = tuple(OAuth2Keys.model_fields)  # kind, client_secret_env, refresh_token_env, *SETTINGS


def secret_key(cmap: Mapping[str, Any]) -> str:
    """The YAML key naming the secret's environment variable for this entry's kind."""
    return "client_secret_env" if cmap.get("kind") in OAUTH2_KINDS else "password_env"


def parse(v, cpath: str, cmap: Mapping[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Check the OAuth2 keys of one credential entry; fills `extra` (kind, oauth2,
    refresh_token_env). Returns the mapping with client_secret_env as password_env."""
    kind = cmap.get("kind", CredentialKind.USER)
    if kind not in CredentialKind.values:
        v.err(f"{cpath}.kind", f"must be one of {', '.join(CredentialKind.values)}, not {kind!r}")
        return dict(cmap)
    extra["kind"] = kind
    out = dict(cmap)
    if kind not in OAUTH2_KINDS:
        for key in YAML_KEYS[1:]:
            if key in cmap:
                v.err(f"{cpath}.{key}", f"only for the OAuth2 kinds (this credential is {kind})")
        return out
    if "password_env" in cmap:
        v.err(f"{cpath}.password_env", "an OAuth2 credential names its secret with client_secret_env")
    out.pop("password_env", None)
    if "client_secret_env" in cmap:
        out["password_env"] = cmap["client_secret_env"]
    settings: dict[str, str] = {}
    for key in SETTINGS:
        if key in cmap:
            if not isinstance(cmap[key], str) or not cmap[key].strip():
                v.err(f"{cpath}.{key}", f"expected a non-empty text, got {cmap[key]!r}")
                continue
            settings[key] = cmap[key].strip()
    if kind == CredentialKind.OAUTH2_CLIENT_CREDENTIALS:
        for key in ("provider", "directory", "issuer", "authorization_url"):
            if key in cmap:
                v.err(f"{cpath}.{key}", "only for kind oauth2_authorization_code")
    for key, message in providers.settings_problems(kind, settings):
        v.err(f"{cpath}.{key}", message)
    extra["oauth2"] = settings
    if "refresh_token_env" in cmap:
        env = cmap["refresh_token_env"]
        if kind != CredentialKind.OAUTH2_AUTHORIZATION_CODE:
            v.err(f"{cpath}.refresh_token_env", "only for kind oauth2_authorization_code")
        elif not isinstance(env, str) or not ENV_NAME.fullmatch(env):
            v.err(f"{cpath}.refresh_token_env", f"{env!r} is not an environment variable name")
        else:
            extra["refresh_token_env"] = env
    return out


def plan(errors: list[str], path: str, cur: UserCredential | None, obj: UserCredential, extra: Mapping[str, Any],
         environ: Mapping[str, str]) -> dict[str, tuple[Any, Any]]:
    """Set the OAuth2 fields on the row to write; returns the changes (YAML key -> (old, new))."""
    kind = extra.get("kind", CredentialKind.USER)
    diff: dict[str, tuple[Any, Any]] = {}
    if cur is not None and cur.kind != kind:
        errors.append(f"{path}.kind: credential {cur.name!r} is a {cur.kind} artifact; the kind cannot change "
                      "(create one with another name)")
        return diff
    obj.kind = kind
    if kind not in OAUTH2_KINDS:
        return diff
    settings = dict(extra.get("oauth2") or {})
    old = dict(cur.oauth2 or {}) if cur is not None else {}
    for key in SETTINGS:
        if old.get(key) != settings.get(key):
            diff[key] = (old.get(key), settings.get(key))
    obj.oauth2 = settings
    env = extra.get("refresh_token_env", "")
    if env:
        if (cur.refresh_token_env if cur else "") != env:
            diff["refresh_token_env"] = (cur.refresh_token_env if cur else None, env)
        obj.refresh_token_env = env
        value = environ.get(env)
        if value == "":
            errors.append(f"{path}.refresh_token_env: the environment variable {env} is empty")
        elif value is not None and (cur is None or cur.refresh_token != value):
            obj._imported_refresh_token = value  # written after the save (save_artifact keeps the grant)
            diff["refresh_token"] = (None, None)
    return diff


def after_save(obj: UserCredential) -> None:
    """Store an imported refresh token (apply_config's refresh_token_env)."""
    value = obj.__dict__.pop("_imported_refresh_token", None)
    if value:
        UserCredential.objects.filter(pk=obj.pk).update(refresh_token=value)
        from ...oauth2.tokens import forget

        forget(credential_id=obj.pk)


def export(c: UserCredential, item: dict[str, Any], env_name: str) -> dict[str, Any]:
    """The YAML entry of an OAuth2 artifact: kind, settings, client_secret_env (never a value)."""
    if c.kind not in OAUTH2_KINDS:
        return item
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key == "password_env":
            continue
        out[key] = value
        if key == "name":
            out["kind"] = c.kind
    out.update({k: (c.oauth2 or {})[k] for k in SETTINGS if (c.oauth2 or {}).get(k)})
    out["client_secret_env"] = env_name.replace("_PASSWORD", "_CLIENT_SECRET") if not c.password_env else env_name
    if c.refresh_token_env:
        out["refresh_token_env"] = c.refresh_token_env
    out["deploy"] = item.get("deploy", False)
    return out
