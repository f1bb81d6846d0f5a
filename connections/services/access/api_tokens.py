"""API tokens: created (shown once), stored as a SHA-256, scoped, revocable, last use kept.

A token looks like `tm_<43 characters>` (256 random bits). Authenticating looks the hash
up (unique index); `last_used_at` is written at most once a minute per token.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ...errors import ValidationError
from ...models import ApiScope, ApiToken, Tenant
from ...models.credentials import credential_name_validator
from .lookup import find_tenant
from .tenancy import UserLike

PREFIX = "tm_"
TOUCH_EVERY = timedelta(minutes=1)


@dataclass
class NewToken:
    token: ApiToken
    secret: str  # the token itself: shown once, never stored


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def check_scopes(scopes: Iterable[str]) -> list[str]:
    valid = set(ApiScope.values)
    scopes = list(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    unknown = [s for s in scopes if s not in valid]
    if unknown:
        raise ValidationError(f"Unknown scope(s): {', '.join(unknown)}.", hint=f"use {', '.join(sorted(valid))}")
    if not scopes:
        raise ValidationError("Give the token at least one scope.", hint=f"use {', '.join(sorted(valid))}")
    return scopes


def create_token(*, tenant: str | Tenant, name: str, scopes: Iterable[str], user: UserLike | None = None) -> NewToken:
    """Create a token; the returned `secret` is the only copy of it."""
    if not isinstance(tenant, Tenant):
        tenant = find_tenant(slug=tenant)
    name = (name or "").strip()
    try:
        credential_name_validator(name)
    except Exception:
        raise ValidationError(f"Token name {name!r}: use letters, digits, '.', '_' and '-' only.") from None
    scopes = check_scopes(scopes)
    secret = PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            token = ApiToken.objects.create(
                tenant=tenant, name=name, prefix=secret[:10], token_hash=hash_token(secret), scopes=scopes,
                created_by=user if getattr(user, "pk", None) else None,
            )
    except IntegrityError:
        raise ValidationError(f"Tenant '{tenant.slug}' already has a token named '{name}'.",
                              hint="revoke it, or choose another name") from None
    return NewToken(token=token, secret=secret)


def revoke(*, token_ids: Iterable[int]) -> int:
    return ApiToken.objects.filter(pk__in=list(token_ids), revoked_at__isnull=True).update(revoked_at=timezone.now())


def authenticate(*, secret: str) -> ApiToken | None:
    """The active token of an active tenant with this secret, else None; records the use."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = (ApiToken.objects.select_related("tenant")
             .filter(token_hash=hash_token(secret), revoked_at__isnull=True, tenant__active=True).first())
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_EVERY)).update(last_used_at=now)
        token.last_used_at = now
    return token
