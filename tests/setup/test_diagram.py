"""The connection diagram: arrow directions per connection type, labels, escaping."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from connections.services.setup.diagram import diagram_svg

from . import factories as f

pytestmark = pytest.mark.django_db
NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(svg: str):
    root = ET.fromstring(svg)
    boxes = {r.get("data-role"): r for r in root.iterfind(".//svg:rect", NS)}
    arrows = {a.get("class").split()[1]: a for a in root.iterfind(".//svg:line", NS)}
    texts = ["".join(t.itertext()) for t in root.iterfind(".//svg:text", NS)]
    return root, boxes, arrows, texts


def centre_x(rect) -> float:
    return float(rect.get("x")) + float(rect.get("width")) / 2


def points_from_to(arrow, boxes) -> tuple[str, str]:
    """Which box the arrow starts at and which it points to (the marker is at x2)."""
    x1, x2 = float(arrow.get("x1")), float(arrow.get("x2"))
    assert arrow.get("marker-end", "").startswith("url(#")
    near = lambda x: min(boxes, key=lambda role: abs(centre_x(boxes[role]) - x))  # noqa: E731
    return near(x1), near(x2)


def test_outbound_request_and_data_flow_from_tenant_to_server():
    t = f.tenant("acme", "ACME Corp")
    conn = f.outbound(t, port=None, protection="starttls_mandatory")
    root, boxes, arrows, texts = parse(diagram_svg(connection=conn))
    assert set(boxes) == {"tenant", "server"}
    assert centre_x(boxes["tenant"]) < centre_x(boxes["server"])
    assert points_from_to(arrows["request"], boxes) == ("tenant", "server")
    assert points_from_to(arrows["data"], boxes) == ("tenant", "server")
    assert "R" in texts
    assert "SMTP" in texts and "smtp.acme.example:587" in texts and "STARTTLS mandatory" in texts
    assert "ACME Corp" in texts
    assert "Outbound: TenantMail sends over SMTP (mail receiver adapter)" in texts
    assert root.get("data-direction") == "outbound"


@pytest.mark.parametrize("protocol, port, label", [("imap", 993, "IMAP"), ("pop3", 995, "POP3")])
def test_inbound_request_to_server_but_data_from_server_to_tenant(protocol, port, label):
    t = f.tenant("acme")
    conn = f.inbound(t, protocol=protocol, port=None, protection="ssl_tls", post_processing="delete")
    root, boxes, arrows, texts = parse(diagram_svg(connection=conn))
    assert points_from_to(arrows["request"], boxes) == ("tenant", "server")
    assert points_from_to(arrows["data"], boxes) == ("server", "tenant")
    assert arrows["data"].get("data-from") == "server" and arrows["data"].get("data-to") == "tenant"
    assert label in texts and f"imap.acme.example:{port}" in texts and "SSL/TLS" in texts
    assert "Inbound: TenantMail polls IMAP/POP3 (mail sender adapter)" in texts


def test_labels_are_escaped():
    t = f.tenant("evil", "<script>x</script> & Co")
    conn = f.inbound(t, host='"><img src=x onerror=alert(1)>')
    svg = diagram_svg(connection=conn)
    assert "<script>" not in svg and "<img" not in svg
    root, boxes, arrows, texts = parse(svg)  # still well-formed XML
    assert "<script>x</script> & Co" in texts
