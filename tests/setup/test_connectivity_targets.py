"""The connectivity test and the targets policy / greeting wording, through the service layer
(TENANTMAIL_BLOCKED_NETWORKS from Django settings) against the real Dovecot/Postfix."""
from __future__ import annotations

import json
import socket
import threading

import pytest
from django.test import override_settings

from connections.services.setup.connectivity import run_connectivity_test

pytestmark = [pytest.mark.django_db, pytest.mark.mailservers]

BANNER = b"INTERNAL-SERVICE redis_version:7.0.0 build-secret-4711\r\n"


def _failed(result) -> dict:
    return next(s for s in result.steps if not s["ok"])


def test_metadata_address_refused_at_once_by_default(make_connection):
    conn = make_connection("imap", "ssl_tls", "plain", host="169.254.169.254", port=993, timeout=300)
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert not result.ok
    step = _failed(result)
    assert step["name"] == "tcp" and "address" not in step["detail"]
    assert "169.254.169.254 is in the blocked network 169.254.0.0/16 (TENANTMAIL_BLOCKED_NETWORKS)" in step["message"]
    assert "169.254.169.254" in result.summary
    conn.refresh_from_db()
    assert conn.last_test_ok is False


def test_loopback_allowed_by_default_refused_when_listed(make_connection):
    conn = make_connection("imap", "ssl_tls", "plain")
    assert run_connectivity_test(kind="inbound", connection_id=conn.pk).ok
    with override_settings(TENANTMAIL_BLOCKED_NETWORKS="169.254.0.0/16, 127.0.0.0/8"):
        result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert not result.ok and _failed(result)["name"] == "tcp"
    assert "is in the blocked network 127.0.0.0/8" in _failed(result)["message"]
    out = make_connection("smtp", "starttls_mandatory", "plain")
    with override_settings(TENANTMAIL_BLOCKED_NETWORKS="127.0.0.1"):
        result = run_connectivity_test(kind="outbound", connection_id=out.pk)
    assert not result.ok and "blocked network 127.0.0.1/32" in _failed(result)["message"]


def test_wrong_protocol_port_quotes_the_mail_server(make_connection, mail_servers):
    conn = make_connection("imap", "off", "encrypted", listener="pop3_notls")
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    step = _failed(result)
    assert step["name"] == "greeting"
    assert "greeted as a POP3 server, not as an IMAP server: +OK TenantMail test Dovecot" in step["message"]


@pytest.fixture
def banner_server():
    """A loopback TCP service that is not a mail server: it sends a banner and waits."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(BANNER)
                conn.settimeout(5)
                try:
                    conn.recv(1024)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(timeout=10)


@pytest.mark.parametrize("protocol", ["imap", "pop3", "smtp"])
def test_non_mail_banner_never_shown(make_connection, banner_server, protocol):
    conn = make_connection(protocol, "off", "encrypted", host="127.0.0.1", port=banner_server)
    kind = "outbound" if protocol == "smtp" else "inbound"
    result = run_connectivity_test(kind=kind, connection_id=conn.pk)
    step = _failed(result)
    assert step["name"] == "greeting" and "is not a mail server" in step["message"]
    conn.refresh_from_db()
    stored = json.dumps(result.report) + result.summary + json.dumps(conn.last_test_report) + conn.last_test_summary
    for piece in ("INTERNAL-SERVICE", "redis_version", "build-secret-4711"):
        assert piece not in stored
