"""attributes.py: a connection's receiver attributes (default recipients and subject, body type,
charset, transfer encoding)."""
from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from connections.errors import ValidationError
from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import enqueue, sending

pytestmark = pytest.mark.django_db


def _parsed(message: OutboxMessage):
    return message_from_bytes(bytes(OutboxMessage.objects.get(pk=message.pk).mime), policy=policy.default)


def test_connection_defaults_fill_a_message_without_recipients_or_subject(make_connection):
    conn = make_connection(default_to="ops@example.test, \"Doe, J\" <j@example.test>", default_cc="cc@example.test",
                           default_bcc="audit@example.test", default_subject="Report from SAP")
    msg = enqueue.enqueue(connection_id=conn.pk, text="x", dispatch=False)
    assert msg.envelope_to == ["ops@example.test", "j@example.test", "cc@example.test", "audit@example.test"]
    parsed = _parsed(msg)
    assert parsed["Subject"] == "Report from SAP" and "audit" not in str(parsed)  # Bcc only in the envelope
    # a message's own recipients and subject win (all of the default recipients are replaced)
    own = enqueue.enqueue(connection_id=conn.pk, to=["me@example.test"], subject="Mine", text="x", dispatch=False)
    assert own.envelope_to == ["me@example.test"] and own.subject == "Mine"


@pytest.mark.parametrize(("body_type", "charset", "cte", "text", "want_cte"), [
    ("text/csv", "windows-1252", "auto", "a;b\n5 €;ü\n", "quoted-printable"),
    ("text/csv", "iso-8859-1", "8bit", "a;b\nü;1\n", "8bit"),
    ("application/json", "utf-8", "auto", '{"a": 1}\n', "7bit"),
    ("application/json", "utf-8", "base64", '{"a": "ü"}\n', "base64"),
    ("application/xml", "us-ascii", "quoted-printable", "<a>1</a>\n", "quoted-printable"),
    ("application/octet-stream", "utf-8", "auto", "binary-ish ü\n", "base64"),
    ("text/plain", "utf-8", "7bit", "plain\n", "7bit"),
])
def test_body_type_charset_and_transfer_encoding(make_connection, body_type, charset, cte, text, want_cte):
    conn = make_connection(body_type=body_type, body_charset=charset, transfer_encoding=cte)
    msg = enqueue.enqueue(connection_id=conn.pk, to=["a@example.test"], subject="s", text=text, dispatch=False)
    parsed = _parsed(msg)
    assert parsed.get_content_type() == body_type
    assert parsed["Content-Transfer-Encoding"] == want_cte
    if body_type != "application/octet-stream":
        assert parsed.get_content_charset() == charset
    payload = parsed.get_payload(decode=True)
    assert payload.decode(charset).replace("\r\n", "\n") == text


def test_a_body_the_charset_cannot_hold_or_7bit_cannot_carry_is_refused(make_connection):
    latin = make_connection(body_charset="iso-8859-1")
    with pytest.raises(ValidationError, match="iso-8859-1 cannot hold: '€'"):
        enqueue.enqueue(connection_id=latin.pk, to=["a@example.test"], subject="s", text="5 €", dispatch=False)
    seven = make_connection(transfer_encoding="7bit")
    with pytest.raises(ValidationError, match="cannot be sent as 7bit"):
        enqueue.enqueue(connection_id=seven.pk, to=["a@example.test"], subject="s", text="ü", dispatch=False)
    csv = make_connection(body_type="text/csv")
    with pytest.raises(ValidationError, match="give the body as text, not HTML"):
        enqueue.enqueue(connection_id=csv.pk, to=["a@example.test"], subject="s", html="<p>x</p>", dispatch=False)
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)  # send_due runs outside a transaction, as in a worker
@pytest.mark.mailservers
def test_a_csv_body_in_windows_1252_arrives_through_postfix(mail_servers, tenant):
    from .test_sending_postfix import _connection, _read_back

    conn, _ = _connection(mail_servers, tenant, body_type="text/csv", body_charset="windows-1252")
    rcpt, _ = mail_servers.add_user()
    msg = enqueue.enqueue(connection_id=conn.pk, to=[rcpt], subject="csv", text="Preis;Währung\n5;€\n",
                          dispatch=False)
    assert sending.send_due(connection_id=conn.pk).sent == 1
    [raw] = _read_back(mail_servers, rcpt)
    got = message_from_bytes(raw, policy=policy.default)
    assert got.get_content_type() == "text/csv" and got.get_content_charset() == "windows-1252"
    assert got.get_payload(decode=True).decode("windows-1252").replace("\r\n", "\n") == "Preis;Währung\n5;€\n"
    assert OutboxMessage.objects.get(pk=msg.pk).status == OutboxStatus.SENT
