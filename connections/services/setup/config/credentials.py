"""Planning the `credentials:` entries of a tenant: the artifact's fields, its password (read
from the environment variable the entry names, never shown), OAuth2 settings and the deploy."""
from __future__ import annotations

import re
from typing import Any, Mapping

from ....models import CredentialStatus, UserCredential
from ....models.credentials import PASSWORD_MAX_LENGTH
from ...access import tenancy
from . import oauth2
from .plan import SECRET, Change, Item, Plan, TenantItem, copy, created, diff, model_errors
from .schema import CredentialEntry

# Artifact states in which nothing is left to deploy.
SETTLED = (CredentialStatus.DEPLOYED, CredentialStatus.AUTHORIZED, CredentialStatus.UNAUTHORIZED)


def password_env_name(tenant_slug: str, credential_name: str) -> str:
    """The environment variable that holds a credential's password, e.g. ACME_MAILBOX_PASSWORD."""
    raw = f"{tenant_slug}_{credential_name}_PASSWORD".upper()
    name = re.sub(r"[^A-Z0-9]+", "_", raw).strip("_")
    return f"_{name}" if name[:1].isdigit() else name


def plan_credential(c: Item, t: TenantItem, tid: int | None, cur: UserCredential | None, *, plan: Plan,
                    work: list, errors: list[str], environ: Mapping[str, str], user: Any) -> None:
    """The changes of one credential entry (to `plan`, `work`) or its errors."""
    env_name = c.extra.get("password_env", "")
    # The model's rules first: an environment problem must not hide them.
    obj = copy(cur or UserCredential(), c.values)
    oauth2_diff = oauth2.plan(errors, c.path, cur, obj, c.extra, environ)
    model_errors(errors, c, obj, CredentialEntry)
    password, ok = _password(errors, c, t, cur, plan, environ)
    if not ok:
        return
    if env_name:
        obj.password_env = env_name
    if cur is None:
        fields = created(c.values, CredentialEntry)
        fields.update(oauth2_diff)
        fields["password_env"] = (None, env_name)
        fields["password"] = (None, SECRET)
        plan.changes.append(Change("create", "credential", t.name, c.name, fields))
        changes, changed = fields, True
    else:
        changes = _update(c, t, cur, obj, password, oauth2_diff)
        if changes:
            plan.changes.append(Change("update", "credential", t.name, c.name, changes))
        changed = bool(changes)
    # Deploy only when the runtime's values would change: a new description or
    # password_env is no reason for a new version.
    deploy = bool(c.extra.get("deploy")) and (
        cur is None or "user" in changes or "password" in changes or bool(set(changes) & set(oauth2.SETTINGS))
        or cur.has_undeployed_changes or cur.status not in SETTLED
    )
    if deploy and user is not None and not _may_deploy(user, tid):
        errors.append(
            f"{c.path}.deploy: user {user.get_username()!r} may not deploy in tenant {t.name!r} "
            "(needs the operator or admin role there, or be a superuser)"
        )
    if deploy:
        plan.changes.append(Change("deploy", "credential", t.name, c.name))
    work.append(("credential", (t.name, obj, password if changed else None, changed, deploy)))


def _password(errors: list[str], c: Item, t: TenantItem, cur: UserCredential | None, plan: Plan,
              environ: Mapping[str, str]) -> tuple[str | None, bool]:
    """(the password from the environment or None to keep the stored one, whether it may be used)."""
    env_name = c.extra.get("password_env", "")
    password = environ.get(env_name) if env_name else None
    if password == "":
        errors.append(f"{c.path}.password_env: the environment variable {env_name} is empty")
        return None, False
    if password is not None and len(password) > PASSWORD_MAX_LENGTH:
        errors.append(
            f"{c.path}.password_env: the password in {env_name} is {len(password)} characters long; "
            f"at most {PASSWORD_MAX_LENGTH} are allowed"
        )
        return None, False
    if password is None and env_name:  # (a missing password_env is already reported)
        if cur is None:
            errors.append(
                f"{c.path}.password_env: the environment variable {env_name} is not set "
                f"(it holds the password of the new credential {c.name!r})"
            )
            return None, False
        plan.notes.append(f"{env_name} is not set: the stored password of {t.name}/{c.name} is kept.")
    stored_problem = cur.decryption_problem() if cur is not None else None
    if password is None and stored_problem:
        errors.append(f"{c.path}.password_env: set {env_name}: {stored_problem}")
        return None, False
    return password, True


def _update(c: Item, t: TenantItem, cur: UserCredential, obj: UserCredential, password: str | None,
            oauth2_diff: dict[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """The changes of an existing credential (secrets as SECRET)."""
    env_name = c.extra.get("password_env", "")
    changes = diff(cur, c.values, CredentialEntry)
    changes.update(oauth2_diff)
    old_env = cur.password_env or password_env_name(t.name, c.name)
    if env_name and env_name != old_env:
        changes["password_env"] = (old_env, env_name)
    elif env_name:
        obj.password_env = cur.password_env  # same as exported: not a change
    # Compare with the decrypted stored password: Fernet ciphertexts differ every time.
    if password is not None and (cur.decryption_problem() or cur.password != password):
        changes["password"] = (SECRET, SECRET)
    return changes


def _may_deploy(user: Any, tenant_id: int | None) -> bool:
    """The deploy permission of the --user, checked while planning (before anything is written)."""
    if tenant_id is None:  # a tenant the file creates: nobody is a member yet
        return tenancy.tenant_ids(user, action="run") is None
    return tenancy.can(user, tenant_id, action="run")
