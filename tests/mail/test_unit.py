"""Pure unit tests of the protocol helpers (no server needed)."""
from __future__ import annotations

import base64
import io
import ssl

import pytest

from connections.errors import TenantMailError
from connections.mail import MailSettings, TLSError, make_ssl_context
from connections.mail.sasl import cram_md5_response, sasl_plain
from connections.mail.errors import (
    AuthenticationFailed,
    ConnectError,
    InsecureAuthRefused,
    MailError,
    MechanismUnavailable,
    ProtocolError,
    SMTPReplyError,
)
from connections.mail.imap import imap_utf7_decode, imap_utf7_encode, uid_sets
from connections.mail.pop3 import read_multiline


def test_cram_md5_response_matches_rfc2195_example():
    challenge = base64.b64decode("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+")
    assert challenge == b"<1896.697170952@postoffice.reston.mci.net>"
    response = cram_md5_response("tim", "tanstaaftanstaaf", challenge)
    assert response == b"tim b913a602c7eda7a495b4e6e7334d3890"
    assert base64.b64encode(response) == b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"


def test_cram_md5_and_plain_use_utf8_bytes():
    response = cram_md5_response("jürgen", "pässwört", b"<1.2@x>")
    assert response.startswith("jürgen ".encode())
    import hmac

    assert response.split(b" ")[1] == hmac.new("pässwört".encode(), b"<1.2@x>", "md5").hexdigest().encode()
    assert sasl_plain("jürgen", "€uro") == b"\0j\xc3\xbcrgen\0\xe2\x82\xacuro"


@pytest.mark.parametrize(
    "name, wire",
    [
        ("INBOX", "INBOX"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("A & B", "A &- B"),
        ("Archiv.ä & b", "Archiv.&AOQ- &- b"),
    ],
)
def test_modified_utf7_roundtrip(name, wire):
    assert imap_utf7_encode(name) == wire
    assert imap_utf7_decode(wire) == name
    assert imap_utf7_decode(wire.encode()) == name


def test_uid_sets_compacts_ranges_and_splits_long_sets():
    assert list(uid_sets([5, 1, 2, 3, 7, 8, 3])) == ["1:3,5,7:8"]
    assert list(uid_sets([])) == []
    many = list(uid_sets(range(1, 20000, 2), max_length=200))
    assert len(many) > 1 and all(len(s) <= 210 for s in many)
    assert sorted(int(x) for s in many for x in s.split(",")) == list(range(1, 20000, 2))


# --- POP3 multi-line reading -------------------------------------------------------------

def _read(wire: bytes) -> bytes:
    sink = io.BytesIO()
    reader = io.BufferedReader(io.BytesIO(wire), buffer_size=7)  # tiny buffer: odd boundaries
    written = read_multiline(reader, sink)
    assert written == len(sink.getvalue())
    return sink.getvalue(), reader.read()


def test_read_multiline_unstuffs_dots_and_stops_at_terminator():
    body, rest = _read(b"Subject: x\r\n\r\n..leading dot\r\n...\r\n.\r\n+OK next\r\n")
    assert body == b"Subject: x\r\n\r\n.leading dot\r\n..\r\n"
    assert rest == b"+OK next\r\n"


def test_read_multiline_keeps_line_endings_exactly():
    body, _ = _read(b"a\nb\r\nc\rstill c\r\n\n.\r\n")
    assert body == b"a\nb\r\nc\rstill c\r\n\n"


def test_read_multiline_dot_only_at_line_start_and_long_lines():
    long_line = b"x" * 200_000 + b".\r\n"  # a dot that is not at a line start, after a long line
    body, _ = _read(long_line + b".x\r\n.\r\n")
    assert body == long_line + b"x\r\n"


def test_read_multiline_empty_body_and_bare_lf_terminator():
    assert _read(b".\r\n") == (b"", b"")
    assert _read(b"line\n.\n") == (b"line\n", b"")


def test_read_multiline_drops_the_crlf_the_server_added_only_with_the_list_size():
    def read(wire, size):
        sink = io.BytesIO()
        read_multiline(io.BufferedReader(io.BytesIO(wire), buffer_size=7), sink, size=size)
        return sink.getvalue()

    bare = b"Subject: x\r\n\r\nno final newline"
    ended = b"Subject: x\r\n\r\nwith final newline\r\n"
    assert read(bare + b"\r\n.\r\n", len(bare)) == bare
    assert read(ended + b".\r\n", len(ended)) == ended
    assert read(b"Subject: x\r\n\r\nno final newline\r\n.\r\n", None).endswith(b"newline\r\n")
    big = b"z" * 300_000  # crosses a flush: the last two bytes are held back until the end
    assert read(big + b"\r\n.\r\n", len(big)) == big


def test_read_multiline_raises_when_the_connection_drops():
    with pytest.raises(EOFError):
        _read(b"Subject: x\r\n\r\nbody without terminator\r\n")


def test_read_multiline_streams_big_bodies_in_bounded_pieces():
    writes = []

    class Sink:
        def write(self, data):
            writes.append(len(data))

    line = b"y" * 998 + b"\r\n"
    wire = line * 5000 + b".\r\n"  # 5 MB
    read_multiline(io.BufferedReader(io.BytesIO(wire)), Sink())
    assert sum(writes) == len(line) * 5000
    assert max(writes) < 400_000  # flushed in pieces, never the whole body at once


# --- TLS context -------------------------------------------------------------------------

def _settings(**kw) -> MailSettings:
    return MailSettings(protocol="imap", host="mail.example.org", **kw)


def test_ssl_context_verifies_with_system_store_and_tls12_minimum():
    context = make_ssl_context(_settings())
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.cert_store_stats()["x509_ca"] > 0  # the system trust store is loaded


def test_ssl_context_adds_trusted_ca(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    import datetime as dt

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Unit test CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    base = make_ssl_context(_settings()).cert_store_stats()["x509_ca"]
    context = make_ssl_context(_settings(trusted_ca=pem))
    assert context.cert_store_stats()["x509_ca"] == base + 1
    assert any(c["subject"] == ((("commonName", "Unit test CA"),),) for c in context.get_ca_certs())


def test_ssl_context_rejects_a_broken_trusted_ca():
    with pytest.raises(TLSError) as info:
        make_ssl_context(_settings(trusted_ca="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
    assert "trusted CA" in info.value.message and info.value.hint


def test_ssl_context_without_verification_only_when_asked():
    context = make_ssl_context(_settings(verify_certificate=False))
    assert context.verify_mode == ssl.CERT_NONE and context.check_hostname is False
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


# --- errors and settings -----------------------------------------------------------------

def test_error_hierarchy_and_transience():
    for cls in (ConnectError, TLSError, InsecureAuthRefused, MechanismUnavailable, AuthenticationFailed,
                ProtocolError, SMTPReplyError):
        assert issubclass(cls, MailError) and issubclass(cls, TenantMailError)
    assert ConnectError("x").transient is True and ConnectError("x").step == "tcp"
    assert SMTPReplyError("x", code=451).transient is True
    assert SMTPReplyError("x", code=550).transient is False
    assert MechanismUnavailable("x", offered=["PLAIN"]).offered == ["PLAIN"]
    err = AuthenticationFailed("bad login", hint="check it")
    assert str(err) == "bad login (hint: check it)" and err.step == "auth"


@pytest.mark.parametrize(
    "protocol, protection, port",
    [("smtp", "off", 25), ("smtp", "starttls_mandatory", 587), ("smtp", "starttls_optional", 587),
     ("smtp", "ssl_tls", 465),
     ("imap", "off", 143), ("imap", "starttls_mandatory", 143), ("imap", "starttls_optional", 143),
     ("imap", "ssl_tls", 993),
     ("pop3", "off", 110), ("pop3", "starttls_mandatory", 110), ("pop3", "starttls_optional", 110),
     ("pop3", "ssl_tls", 995)],
)
def test_default_ports(protocol, protection, port):
    assert MailSettings(protocol=protocol, host="h", protection=protection).effective_port == port
    assert MailSettings(protocol=protocol, host="h", protection=protection, port=2525).effective_port == 2525


def test_settings_reject_unknown_values():
    with pytest.raises(ValueError):
        MailSettings(protocol="nntp", host="h")
    with pytest.raises(ValueError):
        MailSettings(protocol="imap", host="h", protection="tls")
    with pytest.raises(ValueError):
        MailSettings(protocol="imap", host="h", authentication="kerberos")


@pytest.mark.parametrize("timeout", [0, 0.5, -1, 300.5, 301, 3600])
def test_settings_refuse_a_timeout_outside_1s_to_5min(timeout):
    with pytest.raises(ValueError, match="timeout"):
        MailSettings(protocol="imap", host="h", timeout=timeout)


@pytest.mark.parametrize("timeout", [1, 1.0, 30, 299.9, 300])
def test_settings_accept_a_timeout_from_1s_to_5min(timeout):
    assert MailSettings(protocol="imap", host="h", timeout=timeout).timeout == timeout


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_settings_refuse_an_impossible_port(port):
    with pytest.raises(ValueError, match="port"):
        MailSettings(protocol="imap", host="h", port=port)


@pytest.mark.parametrize("days_left, warned", [(3, True), (13, True), (14, False), (60, False)])
def test_a_certificate_about_to_expire_is_flagged_on_a_passing_tls_step(days_left, warned):
    from connections.mail.probe import ProbeStep, _add_hints

    settings = MailSettings(protocol="imap", host="h")
    tls = ProbeStep("tls", True, 1.0, {"version": "TLSv1.3", "days_left": days_left, "verified": True})
    _add_hints([tls], settings)
    assert tls.ok  # a warning, not a failure
    if warned:
        assert f"expires in {days_left} days" in tls.message and "renew" in tls.hint
    else:
        assert tls.message == "" and tls.hint == ""
