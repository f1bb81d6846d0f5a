"""The SSL context of connections/mail/tls.py (no server needed)."""
from __future__ import annotations

import ssl

import pytest

from connections.mail import MailSettings, TLSError, make_ssl_context


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
