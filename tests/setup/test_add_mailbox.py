"""Guided setup "Add mailbox" (issue 20, item 5): address and password → settings proposed
(here from an autoconfig document served on loopback) → edited → tested against the real
Dovecot and Postfix → artifact deployed and both connections created, in real Chromium."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model

from connections.models import InboundConnection, OutboundConnection, Tenant, UserCredential
from connections.services.setup import checklist
from connections.services.setup import mailbox

from ..browser import ARTIFACTS, launched_chromium, sign_in

AUTOCONFIG = """<?xml version="1.0"?>
<clientConfig version="1.1">
  <emailProvider id="{domain}">
    <domain>{domain}</domain>
    <incomingServer type="imap"><hostname>{host}</hostname><port>{imaps}</port><socketType>SSL</socketType>
      <authentication>password-cleartext</authentication><username>%EMAILADDRESS%</username></incomingServer>
    <outgoingServer type="smtp"><hostname>{host}</hostname><port>{submission}</port><socketType>STARTTLS</socketType>
      <authentication>password-cleartext</authentication><username>%EMAILADDRESS%</username></outgoingServer>
  </emailProvider>
</clientConfig>"""


AUTODISCOVER = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
 <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
  <Account><AccountType>email</AccountType><Action>settings</Action>
   <Protocol><Type>IMAP</Type><Server>imap.pox.test</Server><Port>993</Port><LoginName>me@pox.test</LoginName>
    <SSL>on</SSL></Protocol>
   <Protocol><Type>SMTP</Type><Server>smtp.pox.test</Server><Port>587</Port><Encryption>TLS</Encryption></Protocol>
  </Account>
 </Response>
</Autodiscover>"""


@pytest.fixture
def autoconfig_server(mail_servers, settings):
    """A loopback HTTP server answering /<domain>/config-v1.1.xml (no external network)."""
    document = AUTOCONFIG.format(domain=mail_servers.domain, host=mail_servers.host, **mail_servers.ports)
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            asked.append(self.path)
            ok = self.path.startswith(f"/{mail_servers.domain}/config-v1.1.xml")
            body = document.encode() if ok else b"not here"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802 - the autodiscover (POX) request
            request = self.rfile.read(int(self.headers["Content-Length"]))
            asked.append(("POST", self.path, request))
            body = AUTODISCOVER.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    settings.TENANTMAIL_AUTOCONFIG_URLS = [f"http://127.0.0.1:{port}/{{domain}}/config-v1.1.xml?emailaddress={{email}}"]
    settings.TENANTMAIL_AUTODISCOVER_URLS = [f"http://127.0.0.1:{port}/autodiscover/{{domain}}"]
    settings.TENANTMAIL_DNS_NAMESERVERS = ["127.0.0.1:9"]  # never the real DNS (nothing answers there)
    settings.TENANTMAIL_DISCOVERY_TIMEOUT = 1
    yield asked
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_proposals_from_presets_autoconfig_autodiscover_and_a_guess(autoconfig_server, mail_servers, settings):
    gmail = mailbox.propose(email="someone@gmail.com")
    assert (gmail.inbound.host, gmail.inbound.port, gmail.outbound.host) == ("imap.gmail.com", 993, "smtp.gmail.com")
    assert "Gmail" in gmail.source and autoconfig_server == []  # a preset needs no network
    m365 = mailbox.propose(email="a@contoso.onmicrosoft.com")
    assert m365.inbound.host == "outlook.office365.com" and m365.outbound.protection == "starttls_mandatory"
    found = mailbox.propose(email=f"orders@{mail_servers.domain}")
    assert (found.inbound.protocol, found.inbound.port, found.inbound.protection) == (
        "imap", mail_servers.ports["imaps"], "ssl_tls")
    assert (found.outbound.port, found.outbound.protection) == (mail_servers.ports["submission"], "starttls_mandatory")
    assert found.source.startswith("the autoconfig document at http://127.0.0.1:")
    # No autoconfig document for pox.test (404): the autodiscover answer is used.
    pox = mailbox.propose(email="me@pox.test")
    assert pox.source.endswith("/autodiscover/pox.test") and "autodiscover" in pox.source
    assert (pox.inbound.host, pox.inbound.port, pox.inbound.protection) == ("imap.pox.test", 993, "ssl_tls")
    assert (pox.outbound.host, pox.outbound.port, pox.outbound.protection) == ("smtp.pox.test", 587, "starttls_mandatory")
    assert any(a[0] == "POST" and b"<EMailAddress>me@pox.test</EMailAddress>" in a[2] for a in autoconfig_server)
    settings.TENANTMAIL_AUTODISCOVER_URLS = []
    guess = mailbox.propose(email="x@nothing-published.test")
    assert guess.inbound.host == "imap.nothing-published.test" and "guess" in guess.source


@pytest.mark.browser
@pytest.mark.mailservers
@pytest.mark.django_db(transaction=True)
def test_add_mailbox_end_to_end_in_chromium(live_server, settings, mail_servers, autoconfig_server):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    tenant = Tenant.objects.create(slug="acme", name="ACME Corp")
    get_user_model().objects.create_superuser("root", "root@example.com", "a-long-pass-phrase")
    address, password = mail_servers.add_user()
    ARTIFACTS.mkdir(exist_ok=True)
    with launched_chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 1100}).new_page()
        sign_in(page, live_server.url, "root", "a-long-pass-phrase")
        # The first screen leads to the guided setup.
        page.click("text=Add mailbox (guided)")
        page.wait_for_selector("#tm-add-mailbox-address")
        page.select_option("#id_tenant", str(tenant.pk))
        page.fill("#id_email", address)
        page.fill("#id_password", "wrong-password")
        page.click("text=Find the server settings")
        page.wait_for_selector("#tm-add-mailbox-settings")
        assert "autoconfig document" in page.inner_text(".tm-proposal-source")
        assert page.input_value("#id_in_port") == str(mail_servers.ports["imaps"])
        assert page.input_value("#id_out_port") == str(mail_servers.ports["submission"])
        assert page.input_value("#id_username") == address
        page.fill("#id_trusted_ca", mail_servers.ca_pem)  # the test servers' private CA: edited by hand
        page.screenshot(path=str(ARTIFACTS / "add-mailbox-1-proposed.png"), full_page=True)
        page.click("text=Test and create")
        # A wrong password: the test fails, says why, nothing is created.
        page.wait_for_selector("#tm-add-mailbox-results")
        assert page.get_attribute('.tm-result[data-kind="inbound"]', "data-ok") == "false"
        assert "authentication" in page.inner_text("#tm-add-mailbox-results").lower()
        assert not InboundConnection.objects.exists() and not OutboundConnection.objects.exists()
        page.screenshot(path=str(ARTIFACTS / "add-mailbox-2-failed.png"), full_page=True)
        assert UserCredential.objects.get(tenant=tenant).version == 0  # stored, not deployed

        # The operator types the right password and renames the inbound connection (every proposed
        # value is editable); the test passes and everything is created and deployed at once.
        page.fill("#id_password", password)
        page.fill("#id_trusted_ca", mail_servers.ca_pem)
        page.fill("#id_in_name", "orders-in")
        page.click("text=Test and create")
        page.wait_for_selector("#setup-checklist")
        page.screenshot(path=str(ARTIFACTS / "add-mailbox-3-created.png"), full_page=True)
        assert "the connectivity test passed" in page.inner_text("ul.messagelist")
        assert page.get_attribute("#setup-checklist", "data-readiness") in ("ready", "needs_attention")
    inbound = InboundConnection.objects.get(name="orders-in")
    outbound = OutboundConnection.objects.get()
    cred = UserCredential.objects.get(tenant=tenant)  # one artifact, the one made in step 1
    assert cred.name == inbound.credential_name and cred.version == 1 and cred.deployed_username == address
    assert outbound.credential_name == cred.name and outbound.default_from == address
    for conn in (inbound, outbound):
        assert conn.last_test_ok is True
        assert checklist.evaluation(connection=conn).item("connectivity").state == "ok"
        assert checklist.evaluation(connection=conn).item("credential_deployed").state == "ok"
    assert inbound.next_poll_at is not None


@pytest.fixture
def dns_server(settings):
    """A loopback DNS server answering SRV queries from a table (RFC 6186 records)."""
    import socket

    import dns.message
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset

    records: dict[str, str] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text()
            if question.rdtype == dns.rdatatype.SRV and name in records:
                reply.answer.append(dns.rrset.from_text(name, 60, dns.rdataclass.IN, dns.rdatatype.SRV, records[name]))
            else:
                reply.set_rcode(3)  # NXDOMAIN
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    settings.TENANTMAIL_DNS_NAMESERVERS = [f"127.0.0.1:{sock.getsockname()[1]}"]
    settings.TENANTMAIL_AUTOCONFIG_URLS = []
    settings.TENANTMAIL_AUTODISCOVER_URLS = []
    settings.TENANTMAIL_DISCOVERY_TIMEOUT = 2
    yield records
    stop.set()
    thread.join()
    sock.close()


def test_srv_records_propose_the_servers(dns_server):
    dns_server.update({
        "_imaps._tcp.srv.test.": "0 1 993 imap.srv.test.",
        "_imap._tcp.srv.test.": "0 0 0 .",  # "." : not offered (RFC 6186 3.4)
        "_submission._tcp.srv.test.": "10 1 587 smtp-b.srv.test.",
    })
    dns_server["_submissions._tcp.srv.test."] = "0 0 0 ."
    proposal = mailbox.propose(email="someone@srv.test")
    assert proposal.source == "DNS SRV records of srv.test"
    assert (proposal.inbound.host, proposal.inbound.port, proposal.inbound.protection) == ("imap.srv.test", 993, "ssl_tls")
    assert (proposal.outbound.host, proposal.outbound.port, proposal.outbound.protection) == (
        "smtp-b.srv.test", 587, "starttls_mandatory")
