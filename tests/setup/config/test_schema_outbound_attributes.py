"""The receiver attributes of an outbound connection in YAML (issue 19, contract names)."""
from __future__ import annotations

import pytest

from connections.models import OutboundConnection
from connections.services.setup import config

from .test_applying import ENV

pytestmark = pytest.mark.django_db

DOC = """
tenants:
  - slug: sap
    name: SAP bridge
    outbound:
      - name: relay
        host: relay.example
        authentication: none
        from: sap@example.test
        to: ops@example.test, "Doe, J" <j@example.test>
        bcc: audit@example.test
        subject: Report from SAP
        body_type: application/json
        body_charset: us-ascii
        transfer_encoding: base64
        resend_uncertain: true
"""


def test_the_attributes_apply_and_export():
    config.apply(config.load(DOC), environ=ENV)
    conn = OutboundConnection.objects.get()
    assert (conn.default_to, conn.default_bcc, conn.default_subject) == (
        'ops@example.test, "Doe, J" <j@example.test>', "audit@example.test", "Report from SAP")
    assert (conn.body_type, conn.body_charset, conn.transfer_encoding, conn.resend_uncertain) == (
        "application/json", "us-ascii", "base64", True)
    exported = config.export()["tenants"][0]["outbound"][0]
    assert exported["to"] == conn.default_to and exported["cc"] is None and exported["body_type"] == "application/json"


@pytest.mark.parametrize(("change", "message"), [
    (("body_type: application/json", "body_type: image/png"), "outbound[0].body_type: "),
    (("body_charset: us-ascii", "body_charset: latin-9"), "outbound[0].body_charset: "),
    (("transfer_encoding: base64", "transfer_encoding: uuencode"), "outbound[0].transfer_encoding: "),
    (("bcc: audit@example.test", "bcc: not-an-address"), "outbound[0].bcc: "),
])
def test_bad_values_are_refused_with_their_place(change, message):
    with pytest.raises(config.ConfigValidationError) as info:
        config.apply(config.load(DOC.replace(*change)), environ=ENV)
    assert any(message in e for e in info.value.errors), info.value.errors
    assert not OutboundConnection.objects.exists()
