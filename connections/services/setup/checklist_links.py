"""Where a checklist item's link points: a place on the connection's change page, the
connectivity test panel, the artifact's deploy or add page (absolute paths, so they work in
`check_setup --json` too; "" when the admin is not installed)."""
from __future__ import annotations

from urllib.parse import urlencode

from django.urls import NoReverseMatch, reverse

from ...models import UserCredential
from ..access.lookup import Connection


def admin_url(name: str, *args) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def deploy_url(cred: UserCredential, c: Connection) -> str:
    """The artifact's deploy confirmation, coming back to the connection afterwards."""
    from ..oauth2.checklist import ADMIN_MODEL

    base = admin_url(f"admin:connections_{ADMIN_MODEL.get(cred.kind, 'usercredential')}_deploy", cred.pk)
    back = on_page(c, "#setup-checklist") if c.pk else ""
    return f"{base}?{urlencode({'next': back})}" if base and back.startswith("/") else base


def add_credential_url(c: Connection, name: str) -> str:
    from ..oauth2.checklist import add_url_name

    base = admin_url(add_url_name(c))
    if not base:
        return ""
    params = {"tenant": c.tenant_id}
    if name:
        params = {"name": name, "tenant": c.tenant_id}
    return f"{base}?{urlencode(params)}"


def connectivity_panel_url(c: Connection) -> str:
    """The connectivity test panel of the connection's change page (it has the button)."""
    return on_page(c, "#connectivity-test")


def on_page(c: Connection, fragment: str) -> str:
    """A place on the connection's change page (absolute, so it works in check_setup --json too)."""
    if c.pk is None:
        return fragment
    return admin_url(f"admin:connections_{c._meta.model_name}_change", c.pk) + fragment
