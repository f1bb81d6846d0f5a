"""Checklist items of a connection with authentication OAuth2: the artifact's kind, its
authorization (Unauthorized / Error -> the Authorize button) and the last token request."""
from __future__ import annotations

from django.utils import timezone

from ...models import OAUTH2_KINDS, Authentication, CredentialKind, CredentialStatus, OAuth2Token, UserCredential
from ..setup.checklist_items import FAIL, OK, WARN, Item
from ..setup.checklist_links import admin_url

ADMIN_MODEL = {
    CredentialKind.USER: "usercredential",
    CredentialKind.OAUTH2_CLIENT_CREDENTIALS: "oauth2clientcredentials",
    CredentialKind.OAUTH2_AUTHORIZATION_CODE: "oauth2authorizationcode",
}


def change_url(cred: UserCredential) -> str:
    return admin_url(f"admin:connections_{ADMIN_MODEL.get(cred.kind, 'usercredential')}_change", cred.pk)


def add_url_name(connection) -> str:
    model = "oauth2clientcredentials" if connection.authentication == Authentication.OAUTH2 else "usercredential"
    return f"admin:connections_{model}_add"


def items(connection, cred: UserCredential) -> list[Item]:
    oauth2 = connection.authentication == Authentication.OAUTH2
    url = change_url(cred)
    if oauth2 != (cred.kind in OAUTH2_KINDS):
        detail = (f"'{cred.name}' is a User Credentials artifact; OAuth2 needs an OAuth2 artifact."
                  if oauth2 else f"'{cred.name}' is an OAuth2 artifact: set the connection's authentication to OAuth2.")
        return [Item("oauth2_kind", FAIL, "The artifact's kind fits the authentication", detail, url, "Open")]
    if not oauth2 or not cred.is_deployed:
        return []
    out: list[Item] = []
    if cred.kind == CredentialKind.OAUTH2_AUTHORIZATION_CODE:
        if cred.status == CredentialStatus.ERROR:
            out.append(Item("oauth2_authorized", FAIL, "OAuth2 access is authorized",
                            cred.status_detail or f"'{cred.name}' needs a new authorization.", url, "Re-authorize"))
        elif not cred.__dict__.get("refresh_token"):
            out.append(Item("oauth2_authorized", FAIL, "OAuth2 access is authorized",
                            f"'{cred.name}' is not authorized yet: sign in at the provider once.", url, "Authorize"))
        else:
            out.append(Item("oauth2_authorized", OK, "OAuth2 access is authorized", f"'{cred.name}' holds a grant.", url,
                            "Open"))
    elif cred.status == CredentialStatus.ERROR:
        out.append(Item("oauth2_authorized", FAIL, "The provider issues tokens", cred.status_detail, url, "Open"))
    row = OAuth2Token.objects.filter(credential_id=cred.pk).only("expires_at", "last_error", "access_token").first()
    if row is not None and row.last_error and cred.status != CredentialStatus.ERROR:
        expired = row.expires_at is None or row.expires_at <= timezone.now()
        out.append(Item("oauth2_token", FAIL if expired else WARN, "Access token is current",
                        ("The access token has expired and the last request failed: " if expired
                         else "The last token request failed: ") + row.last_error, url, "Open the artifact"))
    return out
