"""An inbound connection to a closed port: the alert e-mail goes out through the tenant's outbound
connection (the outbox, a real worker, the real Postfix) into a real Dovecot mailbox; fixed, the
resolve e-mail follows."""
from __future__ import annotations

import socket
import uuid
from email import message_from_bytes, policy

import pytest

from connections.models import AlertSettings, InboundConnection, OutboundConnection, UserCredential
from connections.services.inbound.poll import poll
from connections.services.setup import credentials
from connections.services.monitoring import runtime, watchdog

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _closed_port(host: str) -> int:
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def _credential(tenant, mail_servers) -> tuple[str, str]:
    address, password = mail_servers.add_user()
    name = f"cred-{uuid.uuid4().hex[:6]}"
    cred = credentials.save_artifact(credential=UserCredential(tenant=tenant, name=name, username=address),
                                     password=password)
    credentials.deploy(credential_id=cred.pk, user=None)
    return name, address


def _subjects(mails) -> list[str]:
    return [str(message_from_bytes(m, policy=policy.default)["Subject"]) for m in mails]


def test_closed_port_alert_mail_and_resolve_mail(tenant, mail_servers, tenantmail_worker):
    ops, _ = mail_servers.add_user()
    smtp_cred, sender = _credential(tenant, mail_servers)
    OutboundConnection.objects.create(
        tenant=tenant, name="notifications", host=mail_servers.host, port=mail_servers.ports["submission"],
        protection="starttls_mandatory", authentication="plain", credential_name=smtp_cred,
        trusted_ca=mail_servers.ca_pem, timeout=10, default_from=f"TenantMail <{sender}>",
    )
    AlertSettings.objects.create(tenant=tenant, email_to=[ops], email_via="notifications", failing_after=1)
    imap_cred, _ = _credential(tenant, mail_servers)
    conn = InboundConnection.objects.create(
        tenant=tenant, name="orders", host=mail_servers.host, port=_closed_port(mail_servers.host),
        protection="ssl_tls", authentication="plain", credential_name=imap_cred, trusted_ca=mail_servers.ca_pem,
        timeout=5,
    )
    result = poll(connection_id=conn.pk)
    assert result.outcome == "failed"
    conn.refresh_from_db()
    assert runtime.inbound_state(conn).state == runtime.FAILING

    watchdog.run_pass()
    [fired] = _subjects(mail_servers.wait_for_messages(ops, count=1, timeout=30).values())
    assert "FIRING" in fired and "orders" in fired and tenant.slug in fired

    # Fixed: the right port; the next poll succeeds, the alert resolves, a second mail says so.
    InboundConnection.objects.filter(pk=conn.pk).update(port=mail_servers.ports["imaps"])
    assert poll(connection_id=conn.pk).outcome == "success"
    watchdog.run_pass()
    subjects = _subjects(mail_servers.wait_for_messages(ops, count=2, timeout=30).values())
    assert any("RESOLVED" in s and "orders" in s for s in subjects), subjects
