"""Every protocol x protection x authentication, with the right and a wrong password, through the
product's clients (connections.mail.*) against the real Dovecot/Postfix of tests/mailservers.py.

Each case runs through a recording TCP relay (a plain byte pump between the client and the real
server, no protocol logic) so the test can prove what crossed the wire in the clear: a refused
plain login never sends the password in any form, encrypted (CRAM-MD5/APOP) never sends it
either, and "allow plain login without TLS" really does send it (which shows the recorder works).
"""
from __future__ import annotations

import base64
import socket
import threading
import uuid
from dataclasses import dataclass

import pytest

from connections.mail.errors import (
    AuthenticationFailed,
    InsecureAuthRefused,
    MailError,
    MechanismUnavailable,
    TLSError,
)
from connections.mail.imap import IMAPClient
from connections.mail.pop3 import POP3Client
from connections.mail.smtp import SMTPClient

pytestmark = pytest.mark.mailservers

CLIENTS = {"smtp": SMTPClient, "imap": IMAPClient, "pop3": POP3Client}
PROTECTIONS = ("off", "starttls_mandatory", "starttls_optional", "ssl_tls")
CREDENTIAL = "matrix-cred"
NOTLS = {"smtp": "smtp_notls", "imap": "imap_notls", "pop3": "pop3_notls"}


# --------------------------------------------------------------------------- the recording relay
class WireRecorder:
    """Relays TCP connections to 127.0.0.1:<upstream> and records what the client sent."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.client_bytes = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)
            self._sockets += [client, server]
            for src, dst, record in ((client, server, True), (server, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, record), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record:
                    with self._lock:
                        self.client_bytes += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (dst, src):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()
        for s in self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv()
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(timeout=5)

    def secret_forms(self, username: str, password: str) -> list[bytes]:
        """Every way a password travels readable in SMTP/IMAP/POP3 plain mechanisms."""
        pw = password.encode()
        plain_blob = b"\0" + username.encode() + b"\0" + pw
        return [pw, base64.b64encode(pw), base64.b64encode(plain_blob), base64.b64encode(b"\0" + plain_blob[1:])]

    def saw_secret(self, username: str, password: str) -> bool:
        with self._lock:
            wire = bytes(self.client_bytes)
        return any(form in wire for form in self.secret_forms(username, password))


@pytest.fixture
def recorder():
    made: list[WireRecorder] = []

    def make(upstream: int) -> WireRecorder:
        r = WireRecorder(upstream)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    protocol: str
    protection: str
    authentication: str
    password: str  # "right" | "wrong" | "-" (authentication none)
    listener: str | None = None  # None: the fixture's default for the protection
    allow_plain: bool = False

    @property
    def id(self) -> str:
        extra = (f"-{self.listener}" if self.listener else "") + ("-allowplain" if self.allow_plain else "")
        return f"{self.protocol}-{self.protection}-{self.authentication}-{self.password}{extra}"

    @property
    def encrypted_channel(self) -> bool:
        if self.protection == "off":
            return False
        if self.protection == "starttls_optional" and self.listener in NOTLS.values():
            return False  # the server offers no STARTTLS: continues unencrypted
        return True

    def expected(self) -> type[BaseException] | None:
        if self.authentication == "plain" and not self.encrypted_channel and not self.allow_plain:
            return InsecureAuthRefused
        if self.password == "wrong":
            return AuthenticationFailed
        return None


def _cases() -> list[Case]:
    out = []
    for protocol in CLIENTS:
        for protection in PROTECTIONS:
            for authentication in ("none", "plain", "encrypted"):
                if authentication == "none":
                    if protocol == "smtp":
                        out.append(Case(protocol, protection, "none", "-"))
                    continue
                for password in ("right", "wrong"):
                    out.append(Case(protocol, protection, authentication, password))
                    if authentication == "plain" and protection == "off":
                        out.append(Case(protocol, protection, authentication, password, allow_plain=True))
        # STARTTLS optional against a server that offers no STARTTLS at all.
        for authentication, allow in (("plain", False), ("plain", True), ("encrypted", False)):
            for password in ("right", "wrong"):
                out.append(Case(protocol, "starttls_optional", authentication, password,
                                listener=NOTLS[protocol], allow_plain=allow))
    return out


CASES = _cases()


def _exercise(client, case: Case, mail_servers, address: str) -> None:
    """Prove the session is usable, not merely logged in."""
    if case.protocol == "imap":
        assert client.status("INBOX")["messages"] == 1
    elif case.protocol == "pop3":
        assert client.stat()[0] == 1
    else:
        marker = f"matrix-{uuid.uuid4().hex}"
        message = (f"From: {address}\r\nTo: {address}\r\nSubject: {case.id}\r\n\r\n{marker}\r\n").encode()
        result = client.send(sender=address, recipients=[address], message=message)
        assert result.accepted == [address] and not result.refused
        copies = mail_servers.wait_for_messages(address, count=2)
        assert any(marker.encode() in raw for raw in copies.values())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(case: Case, mail_servers, recorder) -> None:
    address, password = mail_servers.add_user()
    mail_servers.append(address, [b"Subject: already there\r\n\r\nx\r\n"])
    sent_password = password if case.password != "wrong" else f"wrong-{uuid.uuid4().hex[:8]}"
    base = mail_servers.mail_settings(
        protocol=case.protocol, protection=case.protection, authentication=case.authentication,
        username=address if case.authentication != "none" else "", listener=case.listener,
        allow_plain_without_tls=case.allow_plain, credential_name=CREDENTIAL, credential_version=3,
    )
    wire = recorder(base.port)
    settings = mail_servers.mail_settings(
        protocol=case.protocol, protection=case.protection, authentication=case.authentication,
        username=base.username, listener=case.listener, allow_plain_without_tls=case.allow_plain,
        credential_name=CREDENTIAL, credential_version=3, port=wire.port,
    )
    secret = None if case.authentication == "none" else sent_password
    expected = case.expected()

    if expected is None:
        with CLIENTS[case.protocol](settings, secret) as client:
            assert client.encrypted is case.encrypted_channel
            if case.encrypted_channel:
                assert client.tls_info is not None and client.tls_info.verified
            if case.authentication == "encrypted":
                assert client.auth_mechanism in ("CRAM-MD5", "APOP")
            elif case.authentication == "plain":
                assert client.auth_mechanism in ("PLAIN", "LOGIN", "USER")
            _exercise(client, case, mail_servers, address)
    else:
        with pytest.raises(expected) as caught:
            with CLIENTS[case.protocol](settings, secret):
                pass
        exc = caught.value
        text = f"{exc} {exc.message} {exc.hint} {exc!r}"
        assert sent_password not in text and password not in text
        assert exc.step == "auth"
        if expected is InsecureAuthRefused:
            assert "not sent" in exc.message and exc.hint
        if expected is AuthenticationFailed:
            assert address in exc.message and CREDENTIAL in exc.message and "version 3" in exc.message
            assert exc.transient is False

    # What crossed the wire readable.
    if case.encrypted_channel or case.authentication == "none":
        return
    if case.authentication == "plain" and case.allow_plain:
        assert wire.saw_secret(address, sent_password), "allowed plain login must have sent the password"
    else:
        assert not wire.saw_secret(address, sent_password), "the password crossed the network readable"


# --------------------------------------------------------------------------- mechanisms, UTF-8
MECHANISMS = [
    ("imap", "plain", "LOGIN"), ("imap", "plain", "PLAIN"), ("imap", "encrypted", "CRAM-MD5"),
    ("pop3", "plain", "USER"), ("pop3", "plain", "PLAIN"), ("pop3", "encrypted", "CRAM-MD5"),
    ("pop3", "encrypted", "APOP"),
    ("smtp", "plain", "PLAIN"), ("smtp", "plain", "LOGIN"), ("smtp", "encrypted", "CRAM-MD5"),
]


@pytest.mark.parametrize("protocol,authentication,mechanism", MECHANISMS,
                         ids=[f"{p}-{m}" for p, _, m in MECHANISMS])
@pytest.mark.parametrize("right", [True, False], ids=["right", "wrong"])
def test_every_mechanism_with_utf8_user_and_password(mail_servers, protocol, authentication, mechanism,
                                                     right) -> None:
    local = f"jörg.ßü-{uuid.uuid4().hex[:6]}"
    password = f"pä$$wörd:€ {uuid.uuid4().hex[:4]} 🔑"
    address, _ = mail_servers.add_user(local=local, password=password)
    mail_servers.append(address, [b"Subject: utf8\r\n\r\nx\r\n"])
    settings = mail_servers.mail_settings(protocol=protocol, protection="ssl_tls", authentication=authentication,
                                          username=address, credential_name=CREDENTIAL)
    sent = password if right else password.replace("€", "$")
    client = CLIENTS[protocol](settings, sent, mechanism=mechanism)
    if right:
        with client:
            assert client.auth_mechanism == mechanism
            if protocol == "imap":
                assert client.status("INBOX")["messages"] == 1
            elif protocol == "pop3":
                assert client.stat()[0] == 1
    else:
        with pytest.raises(AuthenticationFailed) as caught:
            with client:
                pass
        assert address in caught.value.message and sent not in str(caught.value)


def test_utf8_login_sends_8bit_mail_that_arrives(mail_servers) -> None:
    # The recipient is ASCII: Dovecot 2.3's LMTP has no SMTPUTF8, so Postfix cannot hand it a mail
    # for a UTF-8 address (see tests/mailservers.py); the UTF-8 login is the point here.
    address, password = mail_servers.add_user(local=f"zoë-{uuid.uuid4().hex[:6]}", password="ünïcödé-🔑-pw")
    rcpt, _ = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol="smtp", protection="starttls_mandatory",
                                          authentication="encrypted", username=address)
    body = "From: a@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nGrüße\r\n".encode()
    with SMTPClient(settings, password) as smtp:
        assert smtp.auth_mechanism == "CRAM-MD5"
        assert smtp.send(sender=rcpt, recipients=[rcpt], message=body).accepted == [rcpt]
    assert "Grüße".encode() in next(iter(mail_servers.wait_for_messages(rcpt).values()))


# --------------------------------------------------------------------------- certificates
IMPLICIT = {"smtp": "smtps", "imap": "imaps", "pop3": "pop3s"}
STARTTLS = {"smtp": "submission", "imap": "imap", "pop3": "pop3"}


def _settings(mail_servers, protocol, protection, listener, address, **overrides):
    return mail_servers.mail_settings(protocol=protocol, protection=protection, authentication="plain",
                                      username=address, listener=listener, **overrides)


def _fails_tls(settings, password) -> TLSError:
    with pytest.raises(TLSError) as caught:
        with CLIENTS[settings.protocol](settings, password):
            pass
    assert password not in str(caught.value)
    return caught.value


@pytest.mark.parametrize("protocol", list(CLIENTS))
@pytest.mark.parametrize("protection", ["ssl_tls", "starttls_mandatory", "starttls_optional"])
def test_wrong_host_certificate_is_rejected_unless_trusted_and_matching(mail_servers, mailbox, protocol,
                                                                       protection) -> None:
    address, password = mailbox
    listener = f"{IMPLICIT[protocol]}_wronghost" if protection == "ssl_tls" else f"{STARTTLS[protocol]}_wronghost"
    exc = _fails_tls(_settings(mail_servers, protocol, protection, listener, address), password)
    assert "mail.example.org" in exc.message and "127.0.0.1" in exc.message and exc.hint
    # Trusting that very certificate does not help: it is still for another host name.
    exc = _fails_tls(_settings(mail_servers, protocol, protection, listener, address,
                               trusted_ca=mail_servers.certs["wronghost"] + mail_servers.ca_pem), password)
    assert "mail.example.org" in exc.message
    # Trusted AND matching: the same CA's certificate for 127.0.0.1 is accepted.
    good = IMPLICIT[protocol] if protection == "ssl_tls" else STARTTLS[protocol]
    with CLIENTS[protocol](_settings(mail_servers, protocol, protection, good, address), password) as client:
        assert client.tls_info.verified and "127.0.0.1" in client.tls_info.sans


@pytest.mark.parametrize("protocol", list(CLIENTS))
def test_self_signed_is_accepted_only_when_that_certificate_is_trusted(mail_servers, mailbox, protocol) -> None:
    address, password = mailbox
    listener = f"{IMPLICIT[protocol]}_selfsigned"
    exc = _fails_tls(_settings(mail_servers, protocol, "ssl_tls", listener, address), password)
    assert "not trusted" in exc.message and "trusted CA" in exc.hint
    assert exc.tls_info is not None and exc.tls_info.chain_pem.strip() == mail_servers.certs["selfsigned"].strip()
    trusted = _settings(mail_servers, protocol, "ssl_tls", listener, address,
                        trusted_ca=mail_servers.certs["selfsigned"])
    with CLIENTS[protocol](trusted, password) as client:
        assert client.tls_info.verified


@pytest.mark.parametrize("protocol", list(CLIENTS))
def test_expired_certificate_is_rejected_even_from_the_trusted_ca(mail_servers, mailbox, protocol) -> None:
    address, password = mailbox
    exc = _fails_tls(_settings(mail_servers, protocol, "ssl_tls", f"{IMPLICIT[protocol]}_expired", address), password)
    assert "expired" in exc.message


@pytest.mark.parametrize("protocol", list(CLIENTS))
def test_private_ca_is_not_trusted_without_trusted_ca(mail_servers, mailbox, protocol) -> None:
    address, password = mailbox
    exc = _fails_tls(_settings(mail_servers, protocol, "ssl_tls", IMPLICIT[protocol], address, trusted_ca=""),
                     password)
    assert "not trusted" in exc.message


@pytest.mark.parametrize("protocol", list(CLIENTS))
def test_validation_off_is_an_explicit_opt_out(mail_servers, mailbox, protocol) -> None:
    address, password = mailbox
    settings = _settings(mail_servers, protocol, "ssl_tls", f"{IMPLICIT[protocol]}_wronghost", address,
                         verify_certificate=False, trusted_ca="")
    with CLIENTS[protocol](settings, password) as client:
        assert client.encrypted and client.tls_info is not None


@pytest.mark.parametrize("protocol", list(CLIENTS))
def test_starttls_mandatory_fails_when_not_offered_and_sends_no_password(mail_servers, mailbox, recorder,
                                                                         protocol) -> None:
    address, password = mailbox
    wire = recorder(mail_servers.ports[NOTLS[protocol]])
    settings = _settings(mail_servers, protocol, "starttls_mandatory", NOTLS[protocol], address, port=wire.port)
    exc = _fails_tls(settings, password)
    assert "STARTTLS" in exc.message.upper() or "STLS" in exc.message.upper()
    assert exc.hint
    assert not wire.saw_secret(address, password)


@pytest.mark.parametrize("protocol", list(CLIENTS))
def test_implicit_tls_against_a_plain_port_says_so(mail_servers, mailbox, protocol) -> None:
    address, password = mailbox
    exc = _fails_tls(_settings(mail_servers, protocol, "ssl_tls", STARTTLS[protocol], address), password)
    assert "STARTTLS" in exc.hint


def test_encrypted_against_a_server_offering_auth_only_after_starttls(mail_servers, mailbox) -> None:
    address, password = mailbox
    settings = mail_servers.mail_settings(protocol="smtp", protection="off", authentication="encrypted",
                                          username=address, listener="submission")
    with pytest.raises(MechanismUnavailable) as caught:
        with SMTPClient(settings, password):
            pass
    assert "STARTTLS" in caught.value.message and "STARTTLS mandatory" in caught.value.hint


def test_unreachable_port_is_a_transient_connect_error(mail_servers, mailbox) -> None:
    address, password = mailbox
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address, port=port, timeout=3)
    with pytest.raises(MailError) as caught:
        with IMAPClient(settings, password):
            pass
    assert caught.value.step == "tcp" and caught.value.transient
