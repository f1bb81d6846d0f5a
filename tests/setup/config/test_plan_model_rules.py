"""apply_config runs the model's field validators: a bad host or trusted CA is an error listed
with its place in the file, and nothing is written."""
from __future__ import annotations

import pytest

from connections.models import InboundConnection, OutboundConnection, Tenant
from connections.services.setup import config

from tests.test_validators import PEM

pytestmark = pytest.mark.django_db

DOC = """
tenants:
  - slug: acme
    name: ACME Corp
    outbound:
      - name: smtp-main
        host: {out_host}
        protection: starttls_mandatory
        authentication: none
        from: orders@acme.example
        trusted_ca: {trusted_ca}
    inbound:
      - name: orders
        protocol: imap
        host: {in_host}
        authentication: none
        schedule: {{every: 300}}
"""


def doc(*, out_host="smtp.acme.example", in_host="imap.acme.example", trusted_ca="null") -> str:
    return DOC.format(out_host=out_host, in_host=in_host, trusted_ca=trusted_ca)


def test_bad_host_and_trusted_ca_are_listed_and_nothing_is_written():
    with pytest.raises(config.ConfigValidationError) as info:
        config.apply(config.load(doc(out_host='"smtp acme.example"', in_host="imap..acme.example",
                                     trusted_ca='"garbage"')), environ={})
    text = str(info.value)
    assert "tenants[0].outbound[0].host: 'smtp acme.example' is not a valid host name or IP address" in text
    assert "tenants[0].inbound[0].host: 'imap..acme.example' is not a valid host name or IP address" in text
    assert "tenants[0].outbound[0].trusted_ca: not a PEM certificate: " in text
    assert not Tenant.objects.exists() and not OutboundConnection.objects.exists()
    assert not InboundConnection.objects.exists()


def test_a_real_certificate_and_an_idn_host_apply():
    block = "|\n" + "".join(f"          {line}\n" for line in PEM.strip().splitlines())
    plan = config.apply(config.load(doc(out_host="smtp.bücher.example", trusted_ca=block)), environ={})
    assert plan.applied
    out = OutboundConnection.objects.get()
    assert out.host == "smtp.bücher.example" and out.trusted_ca.strip() == PEM.strip()
