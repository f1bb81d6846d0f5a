"""Fixtures for signals, webhooks, the API and retention: a real HTTP receiver on loopback,
mails on the real Dovecot (tests/mailservers.py), inbound connections polling them."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.inbound.conftest import make_credential, make_inbound, tenant  # noqa: F401 (fixtures)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A threading HTTP server: records every POST, answers `statuses` in turn (then 200)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    always: int | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> int:
        with self.lock:
            if self.always is not None:
                return self.always
            return self.statuses.pop(0) if self.statuses else 200

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = state.answer()
                with state.lock:
                    state.requests.append(Received(dict(self.headers.items()), body, status))
                payload = b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/mail"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def make_mail(n: int, *, attachment: bytes | None = None, sender: str = "Orders <orders@shop.example>") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "Zoë <in@example.test>, b@example.test"
    msg["Cc"] = "c@example.test"
    msg["Subject"] = f"Order {n} — Grüße"
    msg["Date"] = "Mon, 07 Dec 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<order-{n}@shop.example>"
    msg.set_content(f"Order number {n}\nThank you.\n")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename=f"invoice-{n}.pdf")
    return msg.as_bytes()


@pytest.fixture
def polled(mail_servers, mailbox, make_inbound):
    """polled(count, **connection fields) -> (connection, address): `count` mails in a fresh
    mailbox and an IMAP connection on it that keeps them on the server (selection all)."""

    def make(count: int, *, attachment: bytes | None = b"%PDF-1.4 test\n", **fields):
        address, password = mailbox
        if count:
            mail_servers.append(address, [make_mail(i, attachment=attachment) for i in range(count)])
        values = {"selection": "all", "post_processing": "keep", **fields}
        return make_inbound(address, password, **values), address

    return make
