"""Storing and deploying User Credentials artifacts; resolving deployed values (key rotation:
`key_rotation`).

Plaintext passwords only ever live in local variables of these functions (marked with
`sensitive_variables`, so Django's error reports hide them) and in the returned
`DeployedCredential`, whose repr hides the password. No message, log line or exception
text built here contains a secret.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.views.debug import SafeExceptionReporterFilter
from django.views.decorators.debug import sensitive_variables

from ...errors import CredentialError
from ...fields import KEY_HINT, Undecryptable
from ...models import CredentialDeployment, CredentialKind, CredentialStatus, InboundConnection, OutboundConnection, UserCredential
from ...models.credentials import PASSWORD_MAX_LENGTH
from ..access import tenancy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployedCredential:
    name: str
    username: str
    password: str  # for OAuth2 kinds: the access token (see connection_settings.open_credential)
    version: int
    kind: str = "user_credentials"
    id: int | None = None
    token: object = None  # OAuth2: the AccessToken (expiry, cache or provider, timing)

    def __repr__(self) -> str:  # never show the secret
        return f"DeployedCredential(name={self.name!r}, username={self.username!r}, version={self.version}, kind={self.kind!r})"


LOOK_UP = object()  # resolve_deployed's `found` when the caller has not read the row


@sensitive_variables("cred")
def resolve_deployed(*, tenant_id: int, name: str, found: UserCredential | None | object = LOOK_UP) -> DeployedCredential:
    """The deployed user name and password of the artifact `name` in the tenant; `found`: its
    row (None: there is none) when the caller read it already."""
    cred = found
    if cred is LOOK_UP:
        cred = UserCredential.objects.filter(tenant_id=tenant_id, name=name).first()
    if cred is None:
        raise CredentialError(
            f"No User Credentials artifact named '{name}' exists in this tenant.",
            hint="create and deploy it, or correct the connection's Credential Name",
        )
    # Reading deployed_password raises CredentialError naming the artifact if no key decrypts it.
    if cred.version == 0 or cred.deployed_password is None:
        raise CredentialError(
            f"User Credentials artifact '{name}' has never been deployed.",
            hint=(
                "open it under User Credentials artifacts in the admin and press Deploy "
                "(or apply_config with deploy: true)"
            ),
        )
    return DeployedCredential(
        name=cred.name, username=cred.deployed_username, password=cred.deployed_password, version=cred.version,
        kind=cred.kind, id=cred.pk,
    )


# --- storing and deploying


def settled_status(cred: UserCredential) -> str:
    """Stored while the entered values differ from the deployed ones, else Deployed (OAuth2
    Authorization Code: Authorized with a refresh token, else Unauthorized)."""
    if cred.has_undeployed_changes:
        return CredentialStatus.STORED
    if cred.kind == CredentialKind.OAUTH2_AUTHORIZATION_CODE:
        return CredentialStatus.AUTHORIZED if cred.__dict__.get("refresh_token") else CredentialStatus.UNAUTHORIZED
    return CredentialStatus.DEPLOYED


# What an edit writes: never the deployed values, which only deploy() changes.
_DEPLOYED_FIELDS = ["version", "deployed_username", "deployed_password", "deployed_at", "deployed_by",
                    "deployed_oauth2", "refresh_token"]
_DEPLOYED_ATTNAMES = ["version", "deployed_username", "deployed_password", "deployed_at", "deployed_by_id",
                      "deployed_oauth2", "refresh_token"]
_ENTERED_FIELDS = [
    "name", "description", "kind", "username", "password", "password_env", "oauth2", "refresh_token_env",
    "status", "status_detail", "updated_at",
]


@sensitive_variables("password")
def save_artifact(*, credential: UserCredential, password: str | None = None) -> UserCredential:
    """Save the entered values (password None = keep the stored one); deployed values stay.

    The status is worked out against the deployed values as they are in the database at
    that moment (row locked), so a deploy that happened meanwhile is neither undone nor
    misreported.
    """
    if password is not None:
        if not password:
            raise CredentialError("The password must not be empty.")
        if len(password) > PASSWORD_MAX_LENGTH:
            # Every way in (admin form, apply_config, code) gets the model's limit.
            raise CredentialError(
                f"The password of User Credentials artifact '{credential.name}' is {len(password)} "
                f"characters long; at most {PASSWORD_MAX_LENGTH} are allowed."
            )
        credential.password = password
    with transaction.atomic():
        keep_password = password is None and credential.pk is not None
        carried = _DEPLOYED_ATTNAMES + (["password"] if keep_password else [])
        if credential.pk is not None:
            locked = (
                UserCredential.objects.select_for_update()
                .only(*_DEPLOYED_FIELDS, "password").filter(pk=credential.pk).first()
            )
            if locked is not None:
                for attname in carried:
                    # Through __dict__: an undecryptable deployed copy is carried, not raised.
                    credential.__dict__[attname] = locked.__dict__[attname]
                credential._state.fields_cache.pop("deployed_by", None)
        problem = credential.decryption_problem()
        if problem:
            credential.status, credential.status_detail = CredentialStatus.ERROR, problem
        else:
            credential.status, credential.status_detail = settled_status(credential), ""
        if credential.pk is not None and not credential._state.adding:
            fields = [f for f in _ENTERED_FIELDS if not (keep_password and f == "password")]
            credential.save(update_fields=fields)
        else:
            credential.save()
    return credential


@sensitive_variables("cred")
def deploy(*, credential_id: int, user: tenancy.UserLike | None, source: str = "") -> UserCredential:
    """Make the entered user name and password the ones the runtime uses; returns the artifact.

    Increments the version, records who, when and how (`source`, e.g. "admin" or
    "apply_config") as a CredentialDeployment row — for every deploy, also a system deploy
    (`user` None) — and, with a user, writes "Deployed version N" to Django's admin log.
    Raises CredentialError (naming the artifact) when its password cannot be decrypted,
    after marking it Error.
    """
    with transaction.atomic():
        try:
            cred = UserCredential.objects.select_for_update().select_related("tenant").get(pk=credential_id)
        except UserCredential.DoesNotExist:
            raise CredentialError(f"No User Credentials artifact with id {credential_id}.") from None
        if user is not None:
            tenancy.require(user, cred.tenant_id, action="run")
        try:
            password = cred.password
        except CredentialError as exc:
            failure = exc
        else:
            failure = None
            cred.deployed_username = cred.username
            cred.deployed_password = password
            cred.deployed_oauth2 = dict(cred.oauth2 or {}) if cred.is_oauth2 else {}
            cred.version += 1
            cred.deployed_at = timezone.now()
            cred.deployed_by = user if user is not None and user.is_authenticated else None
            cred.status, cred.status_detail = settled_status(cred), ""
            cred.save()
            _record_deployment(cred, source=source)
    if failure is not None:
        # Recorded in its own short transaction: the deploy itself did not happen.
        UserCredential.objects.filter(pk=cred.pk).update(
            status=CredentialStatus.ERROR, status_detail=failure.message
        )
        log.warning("deploy refused: %s", failure.message)
        raise failure
    log.info(
        "deployed User Credentials artifact %r (tenant %s) as version %d by %s",
        cred.name, cred.tenant_id, cred.version, getattr(cred.deployed_by, "username", "system"),
    )
    return cred


def _record_deployment(cred: UserCredential, *, source: str) -> None:
    """The deployment's history row and, for a person's deploy, the admin log entry."""
    CredentialDeployment.objects.create(
        credential=cred, version=cred.version, deployed_at=cred.deployed_at, deployed_by=cred.deployed_by,
        deployed_by_name=cred.deployed_by.get_username() if cred.deployed_by is not None else "",
        source=source[:32],
    )
    if cred.deployed_by is not None:
        LogEntry.objects.log_actions(
            user_id=cred.deployed_by.pk, queryset=[cred], action_flag=CHANGE,
            change_message=f"Deployed version {cred.version}" + (f" ({source})" if source not in ("", "admin") else ""),
            single_object=True,
        )


# --- who uses an artifact


@dataclass(frozen=True)
class Usage:
    kind: str  # "inbound" | "outbound"
    connection: InboundConnection | OutboundConnection

    def __str__(self) -> str:
        return f"{self.kind} connection '{self.connection.name}'"


def used_by(*, credential: UserCredential, name: str | None = None) -> list[Usage]:
    """The connections of the artifact's tenant whose Credential Name is its name."""
    name = credential.name if name is None else name
    found: list[Usage] = []
    for kind, model in (("inbound", InboundConnection), ("outbound", OutboundConnection)):
        for conn in model.objects.filter(tenant_id=credential.tenant_id, credential_name=name).order_by("name"):
            found.append(Usage(kind, conn))
    return found


def with_usage_counts(*, qs: QuerySet[UserCredential]) -> QuerySet[UserCredential]:
    """Annotate `usage_count` (connections referring to the artifact) in one query."""

    def count(model) -> Coalesce:
        sub = (
            model.objects.filter(tenant_id=OuterRef("tenant_id"), credential_name=OuterRef("name"))
            .order_by().values("tenant_id").annotate(c=Count("pk")).values("c")
        )
        return Coalesce(Subquery(sub), Value(0))

    return qs.annotate(usage_count=count(InboundConnection) + count(OutboundConnection))


def check_deletable(*, credential: UserCredential) -> None:
    """Raise CredentialError naming the connections that still use the artifact."""
    usages = used_by(credential=credential)
    if usages:
        names = ", ".join(str(u) for u in usages)
        raise CredentialError(
            f"User Credentials artifact '{credential.name}' cannot be deleted: it is used by {names}.",
            hint="change the Credential Name of those connections or delete them first",
        )


def delete(*, credential_id: int, user: tenancy.UserLike | None = None) -> None:
    """Delete an artifact that no connection uses."""
    with transaction.atomic():
        cred = UserCredential.objects.select_for_update().get(pk=credential_id)
        if user is not None:
            tenancy.require(user, cred.tenant_id, action="change")
        check_deletable(credential=cred)
        cred.delete()


def is_undecryptable(value: object) -> bool:
    return isinstance(value, Undecryptable)


# --- error reports


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django error reports (500 pages with DEBUG, AdminEmailHandler mails) without secrets.

    Django hides the locals of a frame only when its function is decorated with
    `sensitive_variables`; the protocol layer has no Django imports, so its frames (which
    hold the plaintext password while logging in) would show it. This filter also hides
    every local whose name looks secret (password, pass, secret, token, key, auth...),
    whether DEBUG is on or not. Set it as DEFAULT_EXCEPTION_REPORTER_FILTER.
    """

    def is_active(self, request) -> bool:
        # Also with DEBUG on: a developer's 500 page must not show a mailbox password either.
        return True

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [
            (name, self.cleansed_substitute if self.hidden_settings.search(name) else value)
            for name, value in variables
        ]


__all__ = [
    "KEY_HINT", "DeployedCredential", "SecretSafeExceptionReporterFilter", "Usage", "check_deletable", "delete", "deploy",
    "is_undecryptable", "resolve_deployed", "save_artifact", "settled_status", "used_by", "with_usage_counts",
]
