"""guarded_http: outgoing HTTP to operator-given URLs checked against TENANTMAIL_BLOCKED_NETWORKS
after name resolution, connected to the checked address (a real loopback HTTP server)."""
from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connections.services.common.guarded_http import GuardedHTTPConnection, GuardedHTTPSConnection, TargetBlocked, open_url


@pytest.fixture
def http_server():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.seen = seen
    yield server
    server.shutdown()
    server.server_close()


def test_metadata_address_refused_at_once_by_default(settings):
    with pytest.raises(TargetBlocked) as caught:  # refused before connecting (not a timeout)
        open_url("http://169.254.169.254/latest/meta-data/", timeout=30)
    assert ("169.254.169.254 is in the blocked network 169.254.0.0/16 (TENANTMAIL_BLOCKED_NETWORKS); "
            "nothing was sent to port 80") in str(caught.value)
    assert caught.value.transient is False


def test_loopback_allowed_by_default_refused_when_listed(http_server, settings):
    port = http_server.server_address[1]
    with open_url(f"http://localhost:{port}/x", timeout=5) as response:
        assert response.status == 200
    settings.TENANTMAIL_BLOCKED_NETWORKS = "169.254.0.0/16,127.0.0.0/8,::1/128"
    with pytest.raises(TargetBlocked, match=r"localhost \((127\.0\.0\.1|::1)\) are not allowed"):
        open_url(f"http://localhost:{port}/x", timeout=5)
    assert len(http_server.seen) == 1


def test_redirect_to_a_blocked_address_is_refused(settings):
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(TargetBlocked, match="169.254.0.0/16"):
            open_url(f"http://127.0.0.1:{server.server_address[1]}/", timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def test_connects_to_the_checked_address_with_the_name_in_the_host_header(http_server, monkeypatch):
    """A resolver that answers a public-looking address first, then the metadata address
    (DNS rebinding): the name is resolved once, and the socket goes where the check looked."""
    port = http_server.server_address[1]
    real = socket.getaddrinfo
    answers = ["127.0.0.1", "169.254.169.254"]
    asked = []

    def rebinding(host, *args, **kwargs):
        if host != "rebind.test":
            return real(host, *args, **kwargs)
        asked.append(host)
        return real(answers.pop(0), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    conn = GuardedHTTPConnection("rebind.test", port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().status == 200
    conn.close()
    assert asked == ["rebind.test"] and http_server.seen == [f"rebind.test:{port}"]
    with pytest.raises(TargetBlocked, match=r"rebind\.test \(169\.254\.169\.254\)"):
        conn = GuardedHTTPConnection("rebind.test", port, timeout=5)
        conn.request("GET", "/")
    assert len(http_server.seen) == 1


def test_urlopen_error_types_unchanged_for_unreachable_hosts(settings):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(urllib.error.URLError):
        open_url(urllib.request.Request(f"http://127.0.0.1:{port}/"), timeout=5)


def test_https_pinned_address_keeps_sni_and_certificate_check_on_the_name(tmp_path, monkeypatch):
    import ssl

    from tests.mailservers import WRONG_HOST, _make_certificates

    certs = _make_certificates(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs["wronghost"][0], certs["wronghost"][1])
    names = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            names.append(("Host", self.headers["Host"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **kw: real(
        "127.0.0.1" if host == WRONG_HOST else host, *a, **kw))
    client_ctx = ssl.create_default_context(cafile=certs["ca"][0])
    try:
        conn = GuardedHTTPSConnection(WRONG_HOST, port, timeout=5, context=client_ctx)
        conn.request("GET", "/")
        assert conn.getresponse().status == 204
        conn.close()
        assert names == [WRONG_HOST, ("Host", f"{WRONG_HOST}:{port}")]
        with pytest.raises(ssl.SSLCertVerificationError):  # the certificate is checked against the name
            conn = GuardedHTTPSConnection("localhost", port, timeout=5, context=client_ctx)
            conn.request("GET", "/")
    finally:
        server.shutdown()
        server.server_close()
