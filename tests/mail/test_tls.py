"""TLS against the fixture's listeners: details, wrong host, self-signed, expired, trust."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from connections.mail import IMAPClient, POP3Client, SMTPClient
from connections.mail.errors import TLSError


pytestmark = pytest.mark.mailservers

CLIENTS = {"imap": IMAPClient, "pop3": POP3Client, "smtp": SMTPClient}
WRONGHOST = [
    ("imap", "ssl_tls", "imaps_wronghost"), ("imap", "starttls_mandatory", "imap_wronghost"),
    ("pop3", "ssl_tls", "pop3s_wronghost"), ("pop3", "starttls_mandatory", "pop3_wronghost"),
    ("smtp", "ssl_tls", "smtps_wronghost"), ("smtp", "starttls_mandatory", "submission_wronghost"),
]


@pytest.fixture(scope="module")
def user(mail_servers):
    return mail_servers.add_user()


def test_tls_details_of_a_good_server(mail_servers, user):
    address, password = user
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain", username=address)
    with IMAPClient(settings, password) as imap:
        info = imap.tls_info
    assert info.verified and info.verify_error == ""
    assert info.version in ("TLSv1.2", "TLSv1.3") and info.cipher
    assert "127.0.0.1" in info.sans
    ca = x509.load_pem_x509_certificate(mail_servers.ca_pem.encode())
    assert info.issuer == ca.subject.rfc4514_string()
    assert info.not_after > dt.datetime.now(dt.timezone.utc) and info.days_left > 0
    leaf = x509.load_pem_x509_certificates(info.chain_pem.encode())[0]
    assert leaf.subject.rfc4514_string() == info.subject
    assert leaf.not_valid_after_utc == info.not_after
    assert info.to_dict()["not_after"].startswith(str(info.not_after.year))



def test_certificate_details_of_a_second_session_are_its_own(mail_servers, user):
    # The details of a certificate are read once per process (tls._certificate_details); each
    # session still gets lists of its own and a fresh days_left, and to_dict() copies.
    address, password = user
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain", username=address)
    with IMAPClient(settings, password) as imap:
        first = imap.tls_info
    first.sans.append("changed.example")
    first.to_dict()["sans"].append("changed-too.example")
    with IMAPClient(settings, password) as imap:
        second = imap.tls_info
        assert imap._imap.tagre.match(imap._imap.tagpre + b"1 OK done")  # the process's tag pattern
    assert "changed.example" not in second.sans and "127.0.0.1" in second.sans
    assert second.to_dict()["sans"] == second.sans and second.to_dict()["sans"] is not second.sans
    assert second.subject == first.subject and second.days_left == first.days_left

@pytest.mark.parametrize("protocol, protection, listener", WRONGHOST)
def test_wrong_host_certificate_is_rejected_with_its_names(mail_servers, user, protocol, protection, listener):
    address, password = user
    settings = mail_servers.mail_settings(
        protocol=protocol, protection=protection, authentication="plain", username=address, listener=listener
    )
    with pytest.raises(TLSError) as info:
        CLIENTS[protocol](settings, password).__enter__()
    assert info.value.message == "certificate is for mail.example.org, not 127.0.0.1"
    assert info.value.tls_info is not None and info.value.tls_info.sans == ["mail.example.org"]
    assert not info.value.tls_info.verified and "mail.example.org" in info.value.hint
    assert "BEGIN CERTIFICATE" in info.value.tls_info.chain_pem


@pytest.mark.parametrize("protocol, protection, listener", WRONGHOST[::3])
def test_wrong_host_certificate_accepted_when_the_name_matches(mail_servers, user, protocol, protection, listener):
    address, password = user
    settings = mail_servers.mail_settings(
        protocol=protocol, protection=protection, authentication="plain", username=address, listener=listener,
        tls_server_name="mail.example.org",
    )
    with CLIENTS[protocol](settings, password) as client:
        assert client.tls_info.verified and client.tls_info.sans == ["mail.example.org"]


def test_wrong_host_rejected_even_with_its_certificate_trusted(mail_servers, user):
    address, password = user
    settings = mail_servers.mail_settings(
        protocol="imap", protection="ssl_tls", authentication="plain", username=address,
        listener="imaps_wronghost", trusted_ca=mail_servers.certs["wronghost"],
    )
    with pytest.raises(TLSError) as info:
        IMAPClient(settings, password).__enter__()
    assert "certificate is for mail.example.org" in info.value.message


def test_trusting_exactly_one_server_certificate(mail_servers, user):
    address, password = user
    settings = mail_servers.mail_settings(
        protocol="smtp", protection="starttls_mandatory", authentication="plain", username=address,
        listener="submission_wronghost", trusted_ca=mail_servers.certs["wronghost"], tls_server_name="mail.example.org",
    )
    with SMTPClient(settings, password) as smtp:
        assert smtp.tls_info.verified
    # The CA's other certificates are not trusted by that: the good listener fails now.
    other = mail_servers.mail_settings(
        protocol="smtp", protection="ssl_tls", authentication="plain", username=address,
        trusted_ca=mail_servers.certs["wronghost"],
    )
    with pytest.raises(TLSError) as info:
        SMTPClient(other, password).__enter__()
    assert "not trusted" in info.value.message


def test_self_signed_is_rejected_until_trusted(mail_servers, user):
    address, password = user
    base = dict(protocol="pop3", protection="ssl_tls", authentication="plain", username=address, listener="pop3s_selfsigned")
    with pytest.raises(TLSError) as info:
        POP3Client(mail_servers.mail_settings(**base), password).__enter__()
    assert "not trusted" in info.value.message and "trusted CA" in info.value.hint
    trusted = mail_servers.mail_settings(**base, trusted_ca=mail_servers.certs["selfsigned"])
    with POP3Client(trusted, password) as pop:
        assert pop.tls_info.verified


def test_expired_certificate(mail_servers, user):
    address, password = user
    settings = mail_servers.mail_settings(
        protocol="smtp", protection="ssl_tls", authentication="plain", username=address, listener="smtps_expired"
    )
    with pytest.raises(TLSError) as info:
        SMTPClient(settings, password).__enter__()
    assert "expired on" in info.value.message
    assert info.value.tls_info.days_left < 0


def test_verification_off_connects_but_says_so(mail_servers, user):
    address, password = user
    settings = mail_servers.mail_settings(
        protocol="imap", protection="starttls_mandatory", authentication="plain", username=address,
        listener="imap_wronghost", verify_certificate=False, trusted_ca="",
    )
    with IMAPClient(settings, password) as imap:
        assert imap.encrypted and not imap.tls_info.verified
        assert imap.tls_info.sans == ["mail.example.org"]


def test_implicit_tls_against_a_plain_port_explains(mail_servers, user):
    address, password = user
    settings = mail_servers.mail_settings(
        protocol="imap", protection="ssl_tls", authentication="plain", username=address, listener="imap_notls"
    )
    with pytest.raises(TLSError) as info:
        IMAPClient(settings, password).__enter__()
    assert "does not speak implicit TLS" in info.value.hint or "closed the connection" in info.value.message
