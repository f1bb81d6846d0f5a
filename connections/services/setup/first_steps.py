"""What an empty install's admin index says to do first: three steps, linked (issue 20).

Shown while the user sees no connection at all; each step is marked done once it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from django.urls import NoReverseMatch, reverse

from ...models import InboundConnection, OutboundConnection, Tenant, UserCredential
from ..access import tenancy


@dataclass
class Step:
    title: str
    text: str
    links: list[tuple[str, str]]  # (label, url)
    done: bool


def _url(name: str) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


def first_steps(*, user: tenancy.UserLike, can_add: Callable[[type], bool] = lambda model: True) -> list[Step]:
    """The three steps, or [] once the user sees a connection (nothing to start any more) or
    may add nothing. `can_add(model)`: whether the user may add such objects (links only then)."""
    tenants = tenancy.tenants(user, action="view")
    ids = list(tenants.values_list("pk", flat=True))
    if (InboundConnection.objects.filter(tenant_id__in=ids).exists()
            or OutboundConnection.objects.filter(tenant_id__in=ids).exists()):
        return []
    have_tenant = bool(ids)
    have_artifact = UserCredential.objects.filter(tenant_id__in=ids).exists()
    guided = _url("admin:connections_add_mailbox")
    steps = [
        Step("Add a tenant", "The company or team whose mail connections you run; give staff users a role in "
             "it with Memberships.",
             [("Add tenant", _url("admin:connections_tenant_add"))] if can_add(Tenant) else [], have_tenant),
        Step("Add the mailbox's user name and password",
             "A User Credentials artifact holds them encrypted; Deploy it so that connections can use it.",
             [("Add User Credentials", _url("admin:connections_usercredential_add"))]
             if can_add(UserCredential) else [], have_artifact),
        Step("Add a connection", "Inbound: TenantMail polls a mailbox over IMAP/POP3. Outbound: TenantMail sends "
             "over SMTP. Its setup checklist then says what is missing; run the connectivity test from there.",
             [(label, _url(f"admin:connections_{model._meta.model_name}_add"))
              for label, model in (("Add inbound connection", InboundConnection),
                                   ("Add outbound connection", OutboundConnection)) if can_add(model)], False),
    ]
    if not any(step.links for step in steps):
        return []  # nothing this user could start with (e.g. staff without a role in a tenant)
    if guided and can_add(InboundConnection) and can_add(UserCredential):
        steps[1].text += " Or let the guided setup do steps 2 and 3 at once:"
        steps[1].links.append(("Add mailbox (guided)", guided))
    for step in steps:
        step.links = [(label, url) for label, url in step.links if url]
    return steps
