"""What a wrong greeting says: a mail server of another protocol is quoted, anything else is not.

A connection pointed at the wrong port of a mail server should say what that server said
("greeted as a POP3 server: +OK Dovecot ready."), so the operator sees the mix-up. A
connection pointed at a service that is not a mail server (a database, a cache, an
internal API) must not turn the connectivity test into a banner grabber: its bytes are
never shown, only that the service on this port is not a mail server.
"""
from __future__ import annotations

import re

from .errors import ConnectError, ProtocolError
from .settings import MailSettings
from .wording import where

_NAMES = {"imap": "an IMAP", "pop3": "a POP3", "smtp": "an SMTP"}
_PORT_HINTS = {"imap": "143 or 993", "pop3": "110 or 995", "smtp": "25, 587 or 465"}
# RFC 3501 greetings; RFC 1939 replies; RFC 5321 greetings (220 ready, 421/554 refusals).
_IMAP = re.compile(r"^\* (OK|PREAUTH|BYE)\b", re.IGNORECASE)
_POP3 = re.compile(r"^(\+OK|-ERR)\b")
_SMTP = re.compile(r"^(220|421|554)([ -]|$)")
_QUOTE_MAX = 200


def mail_protocol_of(line: str | bytes) -> str | None:
    """"imap", "pop3" or "smtp" when the first line is a mail server's greeting, else None."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if _IMAP.match(line):
        return "imap"
    if _POP3.match(line):
        return "pop3"
    if _SMTP.match(line):
        return "smtp"
    return None


def quoted(line: str | bytes) -> str:
    """A mail server's greeting line, printable and short enough to show."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in line.strip())
    return text if len(text) <= _QUOTE_MAX else text[:_QUOTE_MAX] + "…"


def unexpected_greeting(settings: MailSettings, line: str | bytes) -> ProtocolError | ConnectError:
    """The error for a first line that is not the greeting `settings.protocol` expects."""
    expected = settings.protocol
    other = mail_protocol_of(line)
    if other is None:
        return ProtocolError(
            f"the service on {where(settings)} is not a mail server (it did not greet as {_NAMES[expected]} "
            "server; what it sent is not shown)",
            hint=f"check host and port: the usual {expected.upper()} ports are {_PORT_HINTS[expected]}",
            step="greeting", transient=False,
        )
    if other != expected:
        return ProtocolError(
            f"the server at {where(settings)} greeted as {_NAMES[other]} server, not as {_NAMES[expected]} "
            f"server: {quoted(line)}",
            hint=(f"this port belongs to {other.upper()}: use the server's {expected.upper()} port "
                  f"({_PORT_HINTS[expected]}) or change the connection's protocol"),
            step="greeting", transient=False,
        )
    return ConnectError(
        f"the server at {where(settings)} refused the session: {quoted(line)}",
        hint="the server may be overloaded or limit connections; try again later",
        step="greeting",
    )
