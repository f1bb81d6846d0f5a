"""Connection host and trusted CA are validated on the model: the admin forms refuse bad values."""
from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from connections.admin.inbound import InboundConnectionForm
from connections.models import OutboundConnection, Tenant
from connections.validators import validate_host, validate_pem_certificates

# A real (self-signed, EC P-256) certificate.
PEM = """-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUKhZe3rzhu39b8cbmruu0bsGveOQwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUQUNNRSBFeGFtcGxlIFJvb3QgQ0EwIBcNMjYxMTIxMTAwMTU0
WhgPMjEyNjEwMjgxMDAxNTRaMB8xHTAbBgNVBAMMFEFDTUUgRXhhbXBsZSBSb290
IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETlg/LSrsYTXgzIFgu7gWeDnk
hCwdoERsLIsM3An5nsYkd0qIYoWnmjesulxf/oU2T33hi4feTCEWUUU1myaa+6NT
MFEwHQYDVR0OBBYEFEQb/NgeNZPRvW3wd0FzLl+F1DmwMB8GA1UdIwQYMBaAFEQb
/NgeNZPRvW3wd0FzLl+F1DmwMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SAAwRQIgeHOyxzZ6HDR1CJ/xW6jG6EYjVv8nf8RHeaPOtpRI1iECIQDde6Qe5uXZ
XAzP3LZ0T1ttcFqkKz52uzK+q0HGtkhqEA==
-----END CERTIFICATE-----
"""


@pytest.mark.parametrize("host", [
    "mail.example.com", "mail.example.com.", "localhost", "127.0.0.1", "::1", "2001:db8::25",
    "bücher.example", "xn--bcher-kva.example", "smtp_relay.internal", "a-b.c-d.example",
])
def test_valid_hosts(host):
    validate_host(host)


@pytest.mark.parametrize("host", [
    "mail example.com", " mail.example.com", "mail.example.com\n", "mail..example.com", "-mail.example.com",
    "mail-.example.com", "mail.example.com/25", "mail.example.com:25", "http://mail.example.com", "[::1]",
    "999.1.1.1", "10.1", "a" * 64 + ".example", "ü" * 70 + ".example", "user@mail.example.com",
])
def test_invalid_hosts(host):
    with pytest.raises(ValidationError) as info:
        validate_host(host)
    assert "host name or IP address" in " ".join(info.value.messages)


def test_pem_certificates():
    validate_pem_certificates(PEM)
    validate_pem_certificates(PEM + PEM)
    validate_pem_certificates("")


@pytest.mark.parametrize("text, reason", [
    ("hello", "no readable -----BEGIN CERTIFICATE-----"),
    ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUabc\n-----END CERTIFICATE-----\n", "no readable"),
    (PEM + PEM.replace("MIIB", "MIIB!!"), "damaged"),
    ("-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n" + PEM, "private key"),
])
def test_not_pem_certificates(text, reason):
    with pytest.raises(ValidationError) as info:
        validate_pem_certificates(text)
    message = " ".join(info.value.messages)
    assert message.startswith("not a PEM certificate: ") and reason in message
    assert "_ssl.c" not in message


@pytest.mark.django_db
def test_admin_outbound_form_refuses_a_bad_host_and_trusted_ca(client, django_user_model):
    tenant = Tenant.objects.create(slug=f"t-{uuid.uuid4().hex[:6]}", name="T")
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.test", "pw"))
    data = {
        "tenant": tenant.pk, "name": "smtp-x", "enabled": "on", "host": "smtp example.test", "port": "",
        "protection": "ssl_tls", "timeout": "30", "verify_certificate": "on", "trusted_ca": "not a certificate",
        "authentication": "plain", "credential_name": "c", "default_from": "a@example.test",
        "default_reply_to": "", "max_per_session": "100", "rate_limit_per_minute": "",
    }
    response = client.post(reverse("admin:connections_outboundconnection_add"), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "is not a valid host name or IP address" in html and "not a PEM certificate: " in html
    assert not OutboundConnection.objects.exists()
    data.update(host="smtp.example.test", trusted_ca=PEM)
    response = client.post(reverse("admin:connections_outboundconnection_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert OutboundConnection.objects.get().trusted_ca.strip() == PEM.strip()


@pytest.mark.django_db
def test_admin_inbound_form_refuses_a_bad_host_and_trusted_ca():
    form = InboundConnectionForm(data={"host": "imap.example.com;rm -rf", "trusted_ca": "-----BEGIN CERTIFICATE-----"})
    assert not form.is_valid()
    assert "not a valid host name or IP address" in " ".join(form.errors["host"])
    assert " ".join(form.errors["trusted_ca"]).startswith("not a PEM certificate: ")
