"""A fault-injecting SMTP server (aiosmtpd) for the errors a real server will not give on demand.

The fault is chosen per recipient by its local part, so one SMTP session can meet several:

=====================  ==========================================================================
rcpt550-…              RCPT TO refused: 550 5.1.1 User unknown
rcpt452-…              RCPT TO refused: 452 4.5.3 Too many recipients
rcpt451-…              RCPT TO refused: 451 4.3.0 Temporary failure
rcpt421-…              RCPT TO answered 421 4.3.2 and the connection closed
data451-…              final reply to the data: 451 4.3.0 Local error in processing
data550-…              final reply to the data: 550 5.7.1 Message rejected as spam
data552-…              final reply to the data: 552 5.3.4 Message too big for system
data421-…              final reply to the data: 421 4.3.2 Shutting down, then the connection closed
drop-…                 the connection closed after the data arrived, before any reply
slow-…                 the final reply comes `slow_seconds` later (past the client's timeout)
anything else          accepted: 250
=====================  ==========================================================================

Every message whose data arrived is in `received` (also those refused or dropped afterwards:
that is exactly the at-least-once window). `sessions` counts SMTP connections.

`SilentListener` accepts TCP connections and never says a word (a greeting timeout).
`CutDataServer` resets the connection after reading part of the data (closed during DATA).
"""
from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

HOST = "127.0.0.1"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


def _fault(address: str) -> str:
    local = address.split("@", 1)[0].lower()
    return local.split("-", 1)[0] if "-" in local else ""


class FaultHandler:
    def __init__(self, server: "FaultServer") -> None:
        self.owner = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.owner.sessions += 1
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        fault = _fault(address)
        if fault == "rcpt550":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if fault == "rcpt452":
            return "452 4.5.3 Too many recipients"
        if fault == "rcpt451":
            return "451 4.3.0 <%s>: Temporary lookup failure" % address
        if fault == "rcpt421":
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 Service shutting down, closing transmission channel"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.owner.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        faults = {_fault(r) for r in envelope.rcpt_tos}
        if "drop" in faults:
            server.transport.close()
            return "250 2.0.0 never seen"
        if "slow" in faults:
            await asyncio.sleep(self.owner.slow_seconds)
            self.owner.accepted.append(self.owner.received[-1])
            return "250 2.0.0 Ok: queued (late)"
        if "data421" in faults:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 Shutting down"
        if "data451" in faults:
            return "451 4.3.0 Error: local error in processing"
        if "data550" in faults:
            return "550 5.7.1 Message rejected as spam"
        if "data552" in faults:
            return "552 5.3.4 Message too big for system"
        self.owner.accepted.append(self.owner.received[-1])
        return "250 2.0.0 Ok: queued as FAULT%d" % len(self.owner.received)


class _Controller(Controller):
    def factory(self):
        return SMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class FaultServer:
    """Start with `start()`, stop with `stop()`; `port` is set once started."""

    size_limit: int | None = 10 * 1024 * 1024
    slow_seconds: float = 3.0
    port: int = 0
    host: str = HOST
    received: list[Received] = field(default_factory=list)
    accepted: list[Received] = field(default_factory=list)
    sessions: int = 0

    def start(self) -> "FaultServer":
        self.port = _free_port()
        self._controller = _Controller(
            FaultHandler(self), hostname=self.host, port=self.port,
            data_size_limit=self.size_limit, enable_SMTPUTF8=False, decode_data=False,
            ident="TenantMail fault server",
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def reset(self) -> None:
        self.received.clear()
        self.accepted.clear()
        self.sessions = 0


class _Listener:
    """A loopback TCP port; each accepted connection goes to `_handle` (in one thread)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


class SilentListener(_Listener):
    """A TCP port that accepts connections and never answers (no greeting)."""

    def __init__(self) -> None:
        self._held: list[socket.socket] = []
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        self._held.append(conn)  # hold it open, say nothing

    def stop(self) -> None:
        super().stop()
        for conn in self._held:
            conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port where nothing listens (connection refused)."""
    return _free_port()


class CutDataServer(_Listener):
    """Speaks just enough SMTP to accept a message, then after 354 reads only `after` bytes of
    the data and closes the connection with the rest unread (the kernel answers with a reset):
    a connection lost in the middle of DATA — the message was incomplete, never delivered."""

    def __init__(self, *, after: int = 2048) -> None:
        self.after = after
        self.got: list[bytes] = []  # the part of the data read before the cut
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._session(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        reader = conn.makefile("rb")
        conn.sendall(b"220 cut.test ESMTP\r\n")
        while True:
            line = reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-cut.test\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                part = b""
                while len(part) < self.after:  # from the socket itself: no read-ahead buffer
                    chunk = conn.recv(self.after - len(part))
                    if not chunk:
                        break
                    part += chunk
                self.got.append(part)
                # Wait (without reading) until the whole message is in our receive buffer, so
                # that closing now leaves data unread: a reset, never a clean end.
                deadline = 50
                while deadline and b"\r\n.\r\n" not in conn.recv(1 << 20, socket.MSG_PEEK):
                    deadline -= 1
                    self._stop.wait(0.1)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")
