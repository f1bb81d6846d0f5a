"""The guided setup's autoconfig / autodiscover lookups and TENANTMAIL_BLOCKED_NETWORKS: a lookup
URL on a blocked address is not fetched (logged with the clear message; the setup goes on to
its next source), while a loopback document server works by default."""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connections.services.setup import discovery, mailbox

from .test_add_mailbox import AUTOCONFIG, AUTODISCOVER

PORTS = {"imaps": 993, "submission": 587}


@pytest.fixture
def document_server(settings):
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bytes):
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            asked.append(("GET", self.path))
            self._answer(AUTOCONFIG.format(domain="corp.test", host="mail.corp.test", **PORTS).encode())

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            asked.append(("POST", self.path))
            self._answer(AUTODISCOVER.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.TENANTMAIL_DNS_NAMESERVERS = ["127.0.0.1:9"]  # never the real DNS
    settings.TENANTMAIL_DISCOVERY_TIMEOUT = 1
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    server.asked = asked
    yield server
    server.shutdown()
    server.server_close()


def _urls(settings, base: str) -> None:
    settings.TENANTMAIL_AUTOCONFIG_URLS = [base + "/{domain}/config-v1.1.xml?emailaddress={email}"]
    settings.TENANTMAIL_AUTODISCOVER_URLS = [base + "/autodiscover/{domain}"]


@pytest.mark.django_db
def test_metadata_address_not_fetched_by_default(document_server, settings, caplog):
    caplog.set_level(logging.WARNING, logger="connections.services.setup.discovery")
    _urls(settings, "http://169.254.169.254")
    assert discovery.autoconfig(email="a@corp.test", domain="corp.test") is None
    assert discovery.autodiscover(email="a@corp.test", domain="corp.test") is None
    proposal = mailbox.propose(email="a@corp.test")
    assert "guess" in proposal.source
    refusals = [r.getMessage() for r in caplog.records if "not fetched" in r.getMessage()]
    assert refusals and all("169.254.169.254 is in the blocked network 169.254.0.0/16 (TENANTMAIL_BLOCKED_NETWORKS)"
                            in m for m in refusals)
    assert any("/autodiscover/corp.test" in m for m in refusals)


@pytest.mark.django_db
def test_loopback_documents_used_by_default_not_fetched_when_listed(document_server, settings, caplog):
    _urls(settings, document_server.base)
    found = mailbox.propose(email="a@corp.test")
    assert found.inbound.host == "mail.corp.test" and found.source.startswith("the autoconfig document at http://127.0.0.1:")
    asked = len(document_server.asked)
    assert discovery.autodiscover(email="a@corp.test", domain="corp.test") is not None

    settings.TENANTMAIL_BLOCKED_NETWORKS = "169.254.0.0/16,127.0.0.0/8"
    caplog.set_level(logging.WARNING, logger="connections.services.setup.discovery")
    assert discovery.autoconfig(email="a@corp.test", domain="corp.test") is None
    assert discovery.autodiscover(email="a@corp.test", domain="corp.test") is None
    assert "guess" in mailbox.propose(email="a@corp.test").source
    assert len(document_server.asked) == asked + 1  # only the autodiscover call made before the change
    assert any("is in the blocked network 127.0.0.0/8 (TENANTMAIL_BLOCKED_NETWORKS)" in r.getMessage()
               for r in caplog.records)
