"""Small builders for the checklist tests (real database rows, no mocks)."""
from __future__ import annotations

from django.utils import timezone

from connections.models import InboundConnection, OutboundConnection, Tenant, UserCredential
from connections.services.setup import credentials as credential_service


def tenant(slug: str = "acme", name: str | None = None) -> Tenant:
    return Tenant.objects.create(slug=slug, name=name or slug.capitalize())


def credential(t: Tenant, name: str = "mailbox", *, deploy: bool = True, **kw) -> UserCredential:
    cred = UserCredential.objects.create(
        tenant=t, name=name, username=kw.pop("username", f"{name}@{t.slug}.example"),
        password=kw.pop("password", "pw-123"), **kw,
    )
    if deploy:
        cred = credential_service.deploy(credential_id=cred.pk, user=None)
    return cred


def tested(**kw) -> dict:
    """Fields of a connection whose last connectivity test passed."""
    return {"last_test_at": timezone.now(), "last_test_ok": True, "last_test_summary": "Logged in; INBOX has 3 mails", **kw}


def inbound(t: Tenant, name: str = "orders", **kw) -> InboundConnection:
    fields = dict(
        host="imap.acme.example", port=993, protection="ssl_tls", authentication="plain",
        credential_name="mailbox", selection="unread", post_processing="mark_read",
    )
    fields.update(tested())
    fields.update(kw)
    return InboundConnection.objects.create(tenant=t, name=name, **fields)


def outbound(t: Tenant, name: str = "smtp", **kw) -> OutboundConnection:
    fields = dict(
        host="smtp.acme.example", port=587, protection="starttls_mandatory", authentication="encrypted",
        credential_name="mailbox", default_from="orders@acme.example",
    )
    fields.update(tested())
    fields.update(kw)
    return OutboundConnection.objects.create(tenant=t, name=name, **fields)
