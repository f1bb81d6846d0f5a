"""Outbound run-time state: failed sends in a row (reset by a delivery) against the real Postfix,
held after a connection problem (a wrong password), never Ready while failing or held;
check_setup and the watchdog say so."""
from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from connections.models import AlertSettings, OutboundConnection, OutboundSendState, OutboxMessage, UserCredential
from connections.services.outbound import enqueue
from connections.services.setup import checklist, credentials
from connections.services.monitoring import operations, outbound, runtime, watchdog
from connections.tasks import send_outbox

from .test_mail_alerts import _closed_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _credential(tenant, username: str, password: str) -> str:
    name = f"cred-{uuid.uuid4().hex[:6]}"
    cred = credentials.save_artifact(credential=UserCredential(tenant=tenant, name=name, username=username),
                                     password=password)
    credentials.deploy(credential_id=cred.pk, user=None)
    return name


def _due_now(conn) -> None:
    OutboxMessage.objects.filter(connection=conn, status="queued").update(next_attempt_at=timezone.now())


def _check_setup_state(capsys) -> dict:
    with pytest.raises(CommandError) as exc:
        call_command("check_setup", "--json")
    assert exc.value.returncode == 1
    [row] = [r for r in json.loads(capsys.readouterr().out)["connections"] if r["kind"] == "outbound"]
    return row


def test_consecutive_failed_sends_fail_the_connection_and_a_delivery_resets(tenant, mail_servers, capsys):
    sender, password = mail_servers.add_user()
    rcpt, _ = mail_servers.add_user()
    AlertSettings.objects.create(tenant=tenant, failing_after=2)
    conn = OutboundConnection.objects.create(
        tenant=tenant, name="notifications", host=mail_servers.host, port=_closed_port(mail_servers.host),
        protection="starttls_mandatory", authentication="plain", credential_name=_credential(tenant, sender, password),
        trusted_ca=mail_servers.ca_pem, timeout=10, default_from=sender, last_test_at=timezone.now(),
        last_test_ok=True,
    )
    for i in range(3):
        enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject=f"m{i}", text="hi", dispatch=False)

    send_outbox(conn.pk)  # closed port: one failed send (the connection, not once per message)
    assert OutboundSendState.objects.get(pk=conn.pk).consecutive_failures == 1
    st = runtime.state_of(conn)
    assert st.state == runtime.BACKING_OFF and "the last send failed" in st.detail
    ev = checklist.evaluation(connection=conn)
    assert ev.readiness != "ready" and ev.item("runtime").label == "Sending: backing off"
    assert _check_setup_state(capsys)["state"] == "backing_off"
    assert not [f for f in watchdog.outbound_findings(now=timezone.now()) if f.kind == "outbox_failed"]

    _due_now(conn)
    send_outbox(conn.pk)  # the second failed send in a row: failing_after (2) reached
    st = runtime.state_of(conn)
    assert st.state == runtime.FAILING and "2 failed sends in a row" in st.detail
    assert checklist.evaluation(connection=conn).readiness == "blocked"
    row = _check_setup_state(capsys)
    assert row["state"] == "failing" and row["state_since"]
    [finding] = [f for f in watchdog.outbound_findings(now=timezone.now()) if f.kind == "outbox_failed"]
    assert finding.subjects == ["notifications"] and finding.tenant_id == tenant.pk
    ops = operations.overview(tenant_ids=[tenant.pk])
    [out_row] = [r for r in ops.rows if r.kind == "outbound"]
    assert out_row.state.state == runtime.FAILING and ops.counts[runtime.FAILING] == 1

    # Fixed: the real submission port; the messages go through Postfix, the count resets.
    OutboundConnection.objects.filter(pk=conn.pk).update(port=mail_servers.ports["submission"])
    _due_now(conn)
    send_outbox(conn.pk)
    assert OutboxMessage.objects.filter(connection=conn, status="sent").count() == 3
    mail_servers.wait_for_messages(rcpt, count=3, timeout=30)
    s = OutboundSendState.objects.get(pk=conn.pk)
    assert s.consecutive_failures == 0 and s.last_send_ok and not s.last_error
    conn.refresh_from_db()
    assert runtime.state_of(conn).state == runtime.OK
    assert checklist.evaluation(connection=conn).item("runtime") is None
    assert not [f for f in watchdog.outbound_findings(now=timezone.now()) if f.kind == "outbox_failed"]


def test_a_wrong_password_holds_the_messages_and_shows_held(tenant, mail_servers, capsys):
    sender, _ = mail_servers.add_user()
    rcpt, _ = mail_servers.add_user()
    conn = OutboundConnection.objects.create(
        tenant=tenant, name="smtp", host=mail_servers.host, port=mail_servers.ports["submission"],
        protection="starttls_mandatory", authentication="plain",
        credential_name=_credential(tenant, sender, "not-the-password"), trusted_ca=mail_servers.ca_pem, timeout=10,
        default_from=sender, last_test_at=timezone.now(), last_test_ok=True,
    )
    enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject="x", text="hi", dispatch=False)
    send_outbox(conn.pk)
    assert OutboxMessage.objects.get(connection=conn).status == "queued"  # held, not failed
    s = OutboundSendState.objects.get(pk=conn.pk)
    assert s.held_until and s.held_until > timezone.now() and s.consecutive_failures == 1
    st = runtime.state_of(conn)
    assert st.state == runtime.BACKING_OFF and st.detail.startswith("held until")
    row = _check_setup_state(capsys)
    assert row["state"] == "backing_off" and "held until" in row["state_detail"]
    OutboundConnection.objects.filter(pk=conn.pk).update(enabled=False)
    conn.refresh_from_db()
    assert outbound.state(conn).state == runtime.DISABLED
