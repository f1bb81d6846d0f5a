"""A minimal IMAP IDLE speaker on asyncio (RFC 2177): thousands of sessions in one event loop.

It logs in (TLS / STARTTLS as the connection says, through its proxy if any), EXAMINEs the
folder read-only and waits in IDLE. It never fetches or stores mail: it only reports that
something happened (`on_event("exists" | "fetch" | "expunge")`) so that the caller runs the
normal poll. IDLE is re-issued every `reissue_after` seconds (at most 25 minutes: servers drop
idle clients after 30). One call of `run_idle_session` is one session: it returns when `stop`
is set and raises a MailError when the session breaks (the caller reconnects with backoff).
No Django.
"""
from __future__ import annotations

import asyncio
import re
import ssl
from typing import Callable

from .errors import ConnectError, MailError, ProtocolError
from .imap_codec import imap_utf7_encode
from .sasl import MECHANISMS, b64, b64decode_challenge, preferred
from .session import upgrade_offered
from .settings import MailSettings
from .tls import make_ssl_context
from .wording import auth_failed, not_offered, refuse_plain, where

MAX_REISSUE_SECONDS = 25 * 60
_MAX_LINE = 64 * 1024
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_UNTAGGED = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE|FETCH)\b", re.I)


def small_tls_buffers(size: int = 4 * 1024) -> None:
    """asyncio gives every TLS connection a 256 KiB read buffer, touched at once (Python 3.11:
    `asyncio.sslproto.SSLProtocol.max_size`): 250 MB for 1,000 idle sessions. IDLE traffic is
    a few short lines, and bigger reads are merely done in more steps: 4 KiB loses nothing.
    Called by the run_idle process only."""
    import asyncio.sslproto

    if getattr(asyncio.sslproto.SSLProtocol, "max_size", 0) > size:
        asyncio.sslproto.SSLProtocol.max_size = size



async def _allowed(host: str, port: int, networks: tuple, *, step: str, what: str) -> list[str]:
    """host's addresses (resolved without blocking the loop), after refusing any in a blocked
    network (TENANTMAIL_BLOCKED_NETWORKS) with ConnectError(step): nothing is sent then."""
    import socket

    from .targets import refuse_blocked

    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConnectError(f"cannot resolve host name {host!r}: {getattr(exc, 'strerror', None) or exc}",
                           step="proxy" if what else "dns") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    refuse_blocked(host, port, addresses, networks, step=step, what=what)
    return addresses

class IdleUnsupported(MailError):
    """The server does not offer IDLE: the connection stays on its schedule."""

    step = "capabilities"
    transient = False


class _Conn:
    def __init__(self, settings: MailSettings) -> None:
        self.s = settings
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.tag = 0
        self.capabilities: set[str] = set()
        self.encrypted = False
        self.force_login = False  # tests: LOGIN even where AUTHENTICATE PLAIN is offered

    async def open(self) -> None:
        s = self.s
        context = make_ssl_context(s) if s.protection != "off" else None
        implicit = context if s.protection == "ssl_tls" else None
        hostname = s.tls_hostname if implicit else None
        limit = _MAX_LINE * 2
        if s.proxy is not None:
            from python_socks import ProxyConnectionError
            from python_socks.async_.asyncio import Proxy

            from .proxy import _LIBRARY_TYPES

            p = s.proxy
            # The proxy's addresses are checked against the blocked networks (the mail server's
            # name is resolved by the proxy); the tunnel goes to the checked address.
            addresses = await _allowed(p.host, p.port, s.blocked_networks, step="proxy",
                                       what=f"the {p.type.upper()} proxy ")
            for index, address in enumerate(addresses):
                proxy = Proxy(_LIBRARY_TYPES[p.type], address, p.port, p.username or None, p.password or None,
                              rdns=True)
                try:
                    sock = await proxy.connect(dest_host=s.host, dest_port=s.effective_port, timeout=s.timeout)
                    break
                except ProxyConnectionError:
                    if index == len(addresses) - 1:
                        raise
            self.reader, self.writer = await asyncio.open_connection(
                sock=sock, ssl=implicit, server_hostname=hostname, limit=limit)
        else:
            if s.blocked_networks:
                await _allowed(s.host, s.effective_port, s.blocked_networks, step="tcp", what="")
            self.reader, self.writer = await asyncio.open_connection(
                s.host, s.effective_port, ssl=implicit, server_hostname=hostname, limit=limit)
        self.encrypted = implicit is not None
        greeting = await self.line()
        if not greeting.startswith(b"* OK"):
            raise ProtocolError(f"the server at {where(s)} did not greet as IMAP: {_t(greeting)}", step="greeting")
        await self.read_capabilities()
        if s.protection in ("starttls_mandatory", "starttls_optional") and upgrade_offered(
            s, "STARTTLS" in self.capabilities, {}, command="STARTTLS", implicit="IMAPS port (993)"
        ):
            await self.command(b"STARTTLS")
            await self.writer.start_tls(context, server_hostname=s.tls_hostname)
            self.encrypted = True
            await self.read_capabilities()

    async def line(self) -> bytes:
        """One response line, literals included (their bytes appended)."""
        assert self.reader is not None
        out = b""
        while True:
            part = await self.reader.readuntil(b"\r\n")
            out += part
            m = _LITERAL.search(part)
            if not m:
                return out
            out += await self.reader.readexactly(int(m.group(1)))

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, text: bytes, *, doing: str = "") -> tuple[bytes, list[bytes]]:
        """Send a tagged command; return (tagged OK line, untagged lines). Raises on NO/BAD."""
        self.tag += 1
        tag = b"i%d" % self.tag
        await self.send(tag + b" " + text + b"\r\n")
        return await self.tagged(tag, doing=doing or _t(text.split(b" ")[0]))

    async def tagged(self, tag: bytes, *, doing: str) -> tuple[bytes, list[bytes]]:
        untagged = []
        while True:
            line = await self.line()
            if line.startswith(tag + b" "):
                status = line[len(tag) + 1:]
                if not status.upper().startswith(b"OK"):
                    raise ProtocolError(f"the server at {where(self.s)} refused {doing}: {_t(status)}")
                return line, untagged
            untagged.append(line)

    async def read_capabilities(self) -> None:
        ok, untagged = await self.command(b"CAPABILITY")
        caps: set[str] = set()
        for line in untagged:
            if line.upper().startswith(b"* CAPABILITY"):
                caps.update(_t(line).split()[2:])
        self.capabilities = {c.upper() for c in caps}

    async def login(self, password: str) -> None:
        """CRAM-MD5 (encrypted), else AUTHENTICATE PLAIN or LOGIN: the clients' mechanisms and
        wording (sasl.py, wording.py), spoken over this loop's streams."""
        s = self.s
        user = s.username
        offered = sorted(c[5:] for c in self.capabilities if c.startswith("AUTH="))
        self.tag += 1
        tag = b"i%d" % self.tag
        name = "LOGIN"
        try:
            if s.authentication == "encrypted":
                name = preferred("encrypted", offered) or ""
                if not name:
                    raise not_offered(f"the server does not offer CRAM-MD5 (it offers: {', '.join(offered) or 'nothing'})",
                                      offered)
                await self.send(tag + b" AUTHENTICATE " + name.encode() + b"\r\n")
                challenge = await self.line()
                if not challenge.startswith(b"+"):
                    raise ProtocolError(f"no {name} challenge: {_t(challenge)}", step="auth")
                response = MECHANISMS[name].respond(s, password, b64decode_challenge(challenge[1:].strip()), 0)
                await self.send(b64(response).encode() + b"\r\n")
            else:
                if not self.encrypted and not s.allow_plain_without_tls:
                    raise refuse_plain(s, starttls_offered="STARTTLS" in self.capabilities, label="password (IMAP LOGIN)")
                if "PLAIN" not in offered or self.force_login:
                    # LOGIN with synchronizing literals: any UTF-8 user name and password.
                    await self._login_literals(tag, user.encode(), password.encode())
                else:
                    name = "PLAIN"
                    message = b64(MECHANISMS[name].initial(s, password)).encode()
                    if "SASL-IR" in self.capabilities:
                        await self.send(tag + b" AUTHENTICATE PLAIN " + message + b"\r\n")
                    else:
                        await self.send(tag + b" AUTHENTICATE PLAIN\r\n")
                        if not (await self.line()).startswith(b"+"):
                            raise ProtocolError("AUTHENTICATE PLAIN was not accepted", step="auth")
                        await self.send(message + b"\r\n")
                    message = b""
            line, _ = await self.tagged(tag, doing="authentication")
        except ProtocolError as exc:
            raise auth_failed(s, exc.message, mechanism=name) from None
        finally:
            password = ""
        m = re.search(rb"\[CAPABILITY ([^\]]*)\]", line)
        if m:
            self.capabilities = {c.upper() for c in _t(m.group(1)).split()}
        else:
            await self.read_capabilities()

    async def _login_literals(self, tag: bytes, user: bytes, password: bytes) -> None:
        await self.send(tag + b" LOGIN {%d}\r\n" % len(user))
        for value, end in ((user, b" {%d}\r\n" % len(password)), (password, b"\r\n")):
            reply = await self.line()
            if not reply.startswith(b"+"):
                raise ProtocolError(_t(reply), step="auth")
            await self.send(value + end)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _t(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()


async def run_idle_session(
    settings: MailSettings,
    password: str,
    *,
    on_event: Callable[[str, str], None],
    stop: asyncio.Event,
    reissue_after: float = MAX_REISSUE_SECONDS,
    mechanism: str | None = None,
) -> None:
    """Hold one IDLE session until `stop` is set. `on_event(kind, detail)` is called (in the
    loop's thread) with "connected" once IDLE runs, then "exists", "expunge", "fetch" as the
    server reports them. Raises IdleUnsupported or another MailError when the session cannot
    go on; the caller decides when to try again. `mechanism="LOGIN"` forces the LOGIN command
    for plain authentication (used when the server offers no AUTHENTICATE PLAIN)."""
    reissue_after = max(1.0, min(float(reissue_after), MAX_REISSUE_SECONDS))
    conn = _Conn(settings)
    conn.force_login = (mechanism or "").upper() == "LOGIN"
    try:
        try:
            await asyncio.wait_for(_connect(conn, password), timeout=settings.timeout * 3)
        except asyncio.TimeoutError:
            raise ConnectError(f"no answer from {where(settings)} within {settings.timeout:g} s") from None
        password = ""
        on_event("connected", "")
        while not stop.is_set():
            await _idle_once(conn, on_event=on_event, stop=stop, reissue_after=reissue_after)
    except MailError:
        raise
    except ssl.SSLError as exc:
        raise ConnectError(f"TLS failure with {where(settings)}: {exc.reason or exc}", step="tls") from None
    except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        text = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConnectError(f"the session with {where(settings)} broke: {text}") from None
    except Exception as exc:  # python-socks errors, …
        raise ConnectError(f"the session with {where(settings)} broke: {exc}") from None
    finally:
        conn.close()


async def _connect(conn: _Conn, password: str) -> None:
    await conn.open()
    await conn.login(password)
    if "IDLE" not in conn.capabilities:
        raise IdleUnsupported(
            f"the server at {where(conn.s)} does not offer IDLE",
            hint="the connection is polled on its schedule only",
        )
    folder = imap_utf7_encode(conn.s.folder or "INBOX").replace("\\", "\\\\").replace('"', '\\"')
    await conn.command(b'EXAMINE "' + folder.encode("ascii") + b'"', doing="EXAMINE")


async def _idle_once(conn: _Conn, *, on_event, stop: asyncio.Event, reissue_after: float) -> None:
    """IDLE … DONE once: until `reissue_after` seconds passed or `stop` is set."""
    conn.tag += 1
    tag = b"i%d" % conn.tag
    await conn.send(tag + b" IDLE\r\n")
    first = await asyncio.wait_for(conn.line(), timeout=conn.s.timeout)
    if not first.startswith(b"+"):
        raise ProtocolError(f"the server at {where(conn.s)} refused IDLE: {_t(first)}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + reissue_after
    stopper = asyncio.ensure_future(stop.wait())
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or stop.is_set():
                break
            reading = asyncio.ensure_future(conn.line())
            done, _ = await asyncio.wait({reading, stopper}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if reading not in done:
                reading.cancel()
                try:
                    await reading
                except (asyncio.CancelledError, Exception):
                    pass
                break
            _report(conn, reading.result(), on_event)
    finally:
        stopper.cancel()
    await conn.send(b"DONE\r\n")
    _, untagged = await asyncio.wait_for(conn.tagged(tag, doing="IDLE"), timeout=conn.s.timeout)
    for line in untagged:  # mail that arrived while IDLE was being ended is news too
        _report(conn, line, on_event)


def _report(conn: _Conn, line: bytes, on_event) -> None:
    """An untagged line read in IDLE: a mailbox event for `on_event`, BYE an error."""
    m = _UNTAGGED.match(line)
    if m:
        on_event(m.group(2).decode().lower(), _t(line))
    elif line.upper().startswith(b"* BYE"):
        raise ConnectError(f"the server at {where(conn.s)} ended the session: {_t(line)}")
