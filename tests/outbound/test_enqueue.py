"""enqueue(): the checks before anything is stored, and the MIME message it builds."""
from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from django.utils import timezone

from connections.errors import ValidationError
from connections.models import OutboxAttachment, OutboxMessage, OutboxStatus
from connections.services.outbound import enqueue
from connections.services.outbound.mime import AttachmentIn

pytestmark = pytest.mark.django_db


def _parse(raw: bytes):
    return message_from_bytes(raw, policy=policy.default)


@pytest.fixture
def conn(make_connection):
    return make_connection()


@pytest.mark.smoke
def test_plain_text_message_is_stored_queued_with_message_id_and_date(conn):
    msg = enqueue.enqueue(connection_id=conn.pk, to=["bob@example.test"], subject="Hello", text="Hi Bob\n",
                          dispatch=False)
    msg.refresh_from_db()
    assert msg.status == OutboxStatus.QUEUED
    assert msg.tenant_id == conn.tenant_id
    assert msg.from_address == "Acme Support <support@example.test>"  # the connection's default
    assert msg.envelope_from == "support@example.test"
    assert msg.envelope_to == ["bob@example.test"]
    assert msg.next_attempt_at <= timezone.now()
    parsed = _parse(bytes(msg.mime))
    assert parsed["Message-ID"] == msg.message_id
    assert msg.message_id.startswith("<") and msg.message_id.endswith("@example.test>")
    assert parsed["Date"].datetime is not None
    assert parsed["Subject"] == "Hello"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().replace("\r\n", "\n") == "Hi Bob\n"
    assert msg.size == len(bytes(msg.mime))
    assert b"\r\n" in bytes(msg.mime) and b"\n" not in bytes(msg.mime).replace(b"\r\n", b"")


def test_utf8_subject_and_display_names_are_rfc2047_and_idn_domain_is_punycode(conn):
    msg = enqueue.enqueue(
        connection_id=conn.pk,
        from_address="Jürgen Müller <jurgen@bücher.example>",
        to=["Zoë Ångström <zoe@bücher.example>", '"Doe, John" <john@example.test>'],
        subject="Grüße aus Köln — 東京 ✓",
        text="Grüße\n", dispatch=False,
    )
    raw = bytes(msg.mime)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()  # everything encoded: RFC 2047 words and IDNA
    assert b"=?utf-8?" in head
    assert b"jurgen@xn--bcher-kva.example" in head
    assert msg.envelope_from == "jurgen@xn--bcher-kva.example"
    assert msg.envelope_to == ["zoe@xn--bcher-kva.example", "john@example.test"]
    parsed = _parse(raw)
    assert parsed["Subject"] == "Grüße aus Köln — 東京 ✓"
    assert parsed["From"].addresses[0].display_name == "Jürgen Müller"
    names = [a.display_name for a in parsed["To"].addresses]
    assert names == ["Zoë Ångström", "Doe, John"]


@pytest.mark.smoke
def test_text_html_and_attachments_structure_and_rfc2231_names(conn):
    pdf = bytes(range(256)) * 40
    msg = enqueue.enqueue(
        connection_id=conn.pk, to=["bob@example.test"], subject="Report",
        text="See the report.\n", html="<p>See the <b>report</b>. Grüße</p>\n",
        attachments=[
            AttachmentIn("Bericht März.pdf", pdf, "application/pdf"),
            AttachmentIn("notes.txt", "Zeile ü\r\nline 2\n".encode("utf-8")),
            AttachmentIn("forwarded.eml", b"Subject: x\r\n\r\nbody\r\n", "message/rfc822"),
        ],
        dispatch=False,
    )
    raw = bytes(msg.mime)
    parsed = _parse(raw)
    assert parsed.get_content_type() == "multipart/mixed"
    parts = list(parsed.iter_parts())
    assert parts[0].get_content_type() == "multipart/alternative"
    alt = [p.get_content_type() for p in parts[0].iter_parts()]
    assert alt == ["text/plain", "text/html"]
    assert "Grüße" in parts[0].get_body(("html",)).get_content()
    atts = list(parsed.iter_attachments())
    assert [a.get_filename() for a in atts] == ["Bericht März.pdf", "notes.txt", "forwarded.eml"]
    assert atts[0].get_content() == pdf
    assert atts[1].get_payload(decode=True) == "Zeile ü\r\nline 2\n".encode("utf-8")  # byte for byte
    assert atts[2].get_content() == b"Subject: x\r\n\r\nbody\r\n"
    assert b"filename*=utf-8''Bericht%20M%C3%A4rz.pdf" in raw
    assert atts[1].get_content_type() == "text/plain"  # guessed from the name
    stored = list(OutboxAttachment.objects.filter(message=msg).order_by("pk"))
    assert [(a.name, a.content_type, a.size) for a in stored] == [
        ("Bericht März.pdf", "application/pdf", len(pdf)),
        ("notes.txt", "text/plain", 17),
        ("forwarded.eml", "application/octet-stream", 20),
    ]
    with stored[0].file.open("rb") as fh:
        assert fh.read() == pdf


def test_html_only_and_empty_body(conn):
    html = enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s", html="<p>x</p>",
                           dispatch=False)
    assert _parse(bytes(html.mime)).get_content_type() == "text/html"
    empty = enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="", dispatch=False)
    assert _parse(bytes(empty.mime)).get_content_type() == "text/plain"


def test_non_ascii_text_is_never_8bit(conn):
    msg = enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s", text="ü" * 2000,
                          dispatch=False)
    assert bytes(msg.mime).isascii()
    assert _parse(bytes(msg.mime)).get_content().replace("\r\n", "\n") == "ü" * 2000 + "\n"


def test_bcc_is_only_in_the_envelope_and_recipients_are_deduplicated(conn):
    msg = enqueue.enqueue(
        connection_id=conn.pk, to=["a@example.test"], cc=["c@example.test", "A@example.test"],
        bcc=["hidden@example.test", "c@EXAMPLE.test"], subject="s", dispatch=False,
    )
    assert b"hidden" not in bytes(msg.mime)
    assert msg.bcc == ["hidden@example.test", "c@EXAMPLE.test"]
    # "A@…" differs in the local part (case-sensitive by RFC 5321); "c@EXAMPLE.test" only in the domain
    assert msg.envelope_to == ["a@example.test", "c@example.test", "A@example.test", "hidden@example.test"]


def test_reply_to_defaults_and_extra_headers(make_connection):
    conn = make_connection(default_reply_to="Help <help@example.test>")
    msg = enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s",
                          extra_headers={"X-Campaign": "Frühling", "List-Unsubscribe": "<mailto:u@example.test>"},
                          dispatch=False)
    parsed = _parse(bytes(msg.mime))
    assert parsed["Reply-To"] == "Help <help@example.test>"
    assert parsed["X-Campaign"] == "Frühling"
    assert parsed["List-Unsubscribe"] == "<mailto:u@example.test>"
    none = enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s", reply_to=[], dispatch=False)
    assert _parse(bytes(none.mime))["Reply-To"] is None
    own = enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s",
                          extra_headers={"Message-ID": "<abc.123@example.test>"}, dispatch=False)
    assert own.message_id == "<abc.123@example.test>"
    assert _parse(bytes(own.mime))["Message-ID"] == "<abc.123@example.test>"


def test_send_after_sets_next_attempt(conn):
    later = timezone.now() + timedelta(hours=2)
    msg = enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s", send_after=later,
                          dispatch=False)
    assert msg.next_attempt_at == later and msg.send_after == later


# --- refusals: a clear ValidationError, and nothing stored -------------------------------

BAD = [
    (dict(to=["not-an-address"]), "To: 'not-an-address' is not a valid e-mail address"),
    (dict(to=["bob@"]), "is not a valid e-mail address"),
    (dict(to=["bob@exa mple.test"]), "is not a valid e-mail address"),
    (dict(to=["alice@example.org <bob@evil.example>"]), "contains 2 addresses"),
    (dict(to=["müller@example.test"]), "non-ASCII characters before the @"),
    (dict(to=[]), "no recipient"),
    (dict(cc=["x@example.test\r\nBcc: victim@example.test"]), "Cc contains a line break"),
    (dict(subject="Hi\r\nBcc: victim@example.test"), "Subject contains a line break"),
    (dict(subject="Hi\nthere"), "Subject contains a line break"),
    (dict(from_address="Eve\n <eve@example.test>"), "From contains a line break"),
    (dict(reply_to=["r@example.test\rX-Evil: 1"]), "Reply-To contains a line break"),
    (dict(extra_headers={"X-Tag": "a\r\nBcc: victim@example.test"}), "Header X-Tag contains a line break"),
    (dict(extra_headers={"X Bad": "v"}), "Header name 'X Bad' is not valid"),
    (dict(extra_headers={"Bcc": "v@example.test"}), "Header Bcc cannot be set"),
    (dict(extra_headers={"Content-Type": "text/html"}), "Header Content-Type cannot be set"),
    (dict(extra_headers={"Message-ID": "no-brackets"}), "is not of the form <id@domain>"),
    (dict(attachments=[AttachmentIn("a\r\nb.txt", b"x")]), "Attachment 1 file name contains a line break"),
    (dict(attachments=[AttachmentIn("", b"x")]), "Attachment 1 has no file name"),
    (dict(attachments=[AttachmentIn("a.bin", b"x", "nonsense")]), "is not of the form type/subtype"),
    (dict(to=["x@bücher..example"]), "not a valid"),
    (dict(priority=10**6), "Priority"),
    (dict(to=["bob@example.test."]), "not a valid"),
    (dict(to=["bo b@example.test"]), "not a valid"),
    (dict(to=["Bob <bob@example.test> trailing"]), "contains 2 addresses"),
    (dict(to=["a@example.test, b@example.test"]), "contains 2 addresses"),
    (dict(bcc=["Bob <>"]), "not a valid"),
    # CR or LF in every header value: To, Bcc (envelope only, still refused), display names,
    # header names, attachment names and content types
    (dict(to=["bob@example.test\r\nBcc: victim@example.test"]), "To contains a line break"),
    (dict(to=['"Bob\r\nBcc: victim@example.test" <bob@example.test>']), "To contains a line break"),
    (dict(bcc=["b@example.test\nX-Evil: 1"]), "Bcc contains a line break"),
    (dict(subject="Hi\rthere"), "Subject contains a line break"),
    (dict(extra_headers={"X-Tag\r\nBcc": "v"}), "is not valid"),
    (dict(extra_headers={"X-Tag": "a\nb"}), "Header X-Tag contains a line break"),
    (dict(extra_headers={"Message-ID": "<a@b>\r\nBcc: victim@example.test"}),
     "Header Message-ID contains a line break"),
    (dict(attachments=[AttachmentIn("a\nContent-Type: text/html.txt", b"x")]), "file name contains a line break"),
    (dict(attachments=[AttachmentIn("a.txt", b"x", "text/plain\r\nX-Evil: 1")]), "not of the form type/subtype"),
    (dict(to=["bob@example.test"], subject="\x00nul"), "Subject contains a control character"),
]


@pytest.mark.parametrize("overrides,expected", BAD, ids=[e for _, e in BAD])
def test_bad_input_is_refused_and_nothing_is_stored(conn, overrides, expected):
    args = dict(connection_id=conn.pk, to=["bob@example.test"], subject="s", text="t", dispatch=False)
    args.update(overrides)
    with pytest.raises(ValidationError) as info:
        enqueue.enqueue(**args)
    assert expected in str(info.value)
    assert not OutboxMessage.objects.exists()
    assert not OutboxAttachment.objects.exists()


def test_missing_from_is_refused(make_connection):
    conn = make_connection(default_from="")
    with pytest.raises(ValidationError, match="no From address and the connection has no default From"):
        enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s", dispatch=False)
    assert not OutboxMessage.objects.exists()
    # given per message, it is fine
    enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s", from_address="me@example.test",
                    dispatch=False)


def test_message_larger_than_the_servers_size_is_refused(make_connection):
    conn = make_connection(smtp_max_size=50_000)
    with pytest.raises(ValidationError) as info:
        enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s",
                        attachments=[AttachmentIn("big.bin", b"\0" * 40_000)], dispatch=False)
    text = str(info.value)
    assert "accepts at most 48.8 KB (SIZE 50000)" in text and "hint:" in text
    assert not OutboxMessage.objects.exists() and not OutboxAttachment.objects.exists()
    # a smaller one passes; with an unknown SIZE, anything passes
    enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s",
                    attachments=[AttachmentIn("small.bin", b"\0" * 30_000)], dispatch=False)
    conn.smtp_max_size = None
    conn.save()
    enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s",
                    attachments=[AttachmentIn("big.bin", b"\0" * 40_000)], dispatch=False)
    assert OutboxMessage.objects.count() == 2


def test_size_limit_from_the_last_connectivity_test_is_used_when_no_session_told_it(make_connection):
    report = {"ok": True, "steps": [{"name": "capabilities", "ok": True,
                                     "detail": {"features": {"size": 20_000}}}]}
    conn = make_connection(last_test_report=report)
    with pytest.raises(ValidationError, match="SIZE 20000"):
        enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s",
                        attachments=[AttachmentIn("big.bin", b"\0" * 30_000)], dispatch=False)
    conn.smtp_max_size = 100_000  # a later session's SIZE wins
    conn.save()
    enqueue.enqueue(connection_id=conn.pk, to=["b@example.test"], subject="s",
                    attachments=[AttachmentIn("big.bin", b"\0" * 30_000)], dispatch=False)
