"""Who may do what in which tenant.

Roles: viewer (read), operator (also run actions: tests, polls, sends, deploys),
admin (also change connections and credentials). Superusers may do everything.
"""
from __future__ import annotations

from typing import Iterable, Literal

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from ...errors import PermissionDenied
from ...models import ROLE_RANK, Membership, Role, Tenant

Action = Literal["view", "run", "change"]
# Actions from the least to the most demanding.
ACTIONS: tuple[Action, ...] = ("view", "run", "change")
_NEEDED: dict[str, Role] = {"view": Role.VIEWER, "run": Role.OPERATOR, "change": Role.ADMIN}

UserLike = AbstractBaseUser | AnonymousUser


def _roles(user: UserLike) -> dict[int, str]:
    """tenant id -> role in active tenants, cached on the user object (one query per
    request; call `forget(user)` after changing memberships of a user object you keep)."""
    cache = getattr(user, "_tenantmail_roles", None)
    if cache is None:
        if not user.is_authenticated or not user.is_active:
            cache = {}
        else:
            cache = dict(
                Membership.objects.filter(user=user, tenant__active=True).values_list("tenant_id", "role")
            )
        user._tenantmail_roles = cache  # type: ignore[union-attr]
    return cache


def forget(user: UserLike) -> None:
    """Drop the cached roles of `user`."""
    try:
        del user._tenantmail_roles  # type: ignore[union-attr]
    except AttributeError:
        pass


def tenant_ids(user: UserLike, *, action: Action = "view") -> list[int] | None:
    """Ids of the tenants where `user` may do `action`; None means all (superuser)."""
    if user.is_authenticated and user.is_active and user.is_superuser:
        return None
    needed = ROLE_RANK[_NEEDED[action]]
    return [tid for tid, role in _roles(user).items() if ROLE_RANK[Role(role)] >= needed]


def tenants(user: UserLike, *, action: Action = "view") -> QuerySet[Tenant]:
    """The tenants where `user` may do `action` (superuser: all, active or not)."""
    ids = tenant_ids(user, action=action)
    qs = Tenant.objects.all()
    return qs if ids is None else qs.filter(pk__in=ids)


def sole_tenant_id(user: UserLike, *, action: Action = "view") -> int | None:
    """The tenant to preset in add forms: the only one where `user` may do `action`
    (for a superuser: the only tenant there is); None when there are several or none."""
    ids = tenant_ids(user, action=action)
    if ids is None:
        ids = list(Tenant.objects.values_list("pk", flat=True)[:2])
    return ids[0] if len(ids) == 1 else None


def can(user: UserLike, tenant_id: int | None, *, action: Action) -> bool:
    """May `user` do `action` in the tenant? With tenant_id None: in any tenant."""
    ids = tenant_ids(user, action=action)
    if ids is None:
        return True
    return bool(ids) if tenant_id is None else tenant_id in ids


def require(user: UserLike, tenant_id: int, *, action: Action) -> None:
    """Raise PermissionDenied unless `user` may do `action` in the tenant."""
    if not can(user, tenant_id, action=action):
        raise PermissionDenied(f"Your role in this tenant does not allow this ({action}).")


def scope(qs: QuerySet, user: UserLike, *, action: Action = "view", field: str = "tenant_id") -> QuerySet:
    """Filter a queryset of tenant-owned rows to what `user` may see (or act on)."""
    ids = tenant_ids(user, action=action)
    return qs if ids is None else qs.filter(**{f"{field}__in": ids})


def is_member_anywhere(user: UserLike, roles: Iterable[str] | None = None) -> bool:
    if user.is_authenticated and user.is_active and user.is_superuser:
        return True
    held = _roles(user).values()
    return any(True for r in held if roles is None or r in roles)
