"""OAuth2 SASL: XOAUTH2 and OAUTHBEARER (RFC 7628) for the IMAP, POP3 and SMTP clients. No Django.

The clients call `imap_oauth2`, `pop3_oauth2` or `smtp_oauth2` from their `_authenticate` when
`settings.authentication == "oauth2"`; the "password" they hold is then the access token.

- The mechanism is chosen from what the server offers (OAUTHBEARER, the standard, before
  XOAUTH2) unless `settings.sasl_mechanism` forces one.
- A token is a password: never sent without TLS (unless `allow_plain_without_tls`).
- On failure the server sends a challenge with base64 JSON (RFC 7628 §3.2.2; XOAUTH2 does the
  same); it must be answered with an empty line before the final reply comes. The JSON
  (`status`, `scope`, `schemes`) goes into the error message: it holds no secret.
"""
from __future__ import annotations

import base64
import binascii
import json

from ._base import auth_failed, b64, network_error, where
from .errors import AuthenticationFailed, ConnectError, InsecureAuthRefused, MailError, MechanismUnavailable

MECHANISMS = ("OAUTHBEARER", "XOAUTH2")  # preference order
CRLF = b"\r\n"


# --- messages ----------------------------------------------------------------------------

def xoauth2_message(user: str, token: str) -> bytes:
    """Google/Microsoft XOAUTH2: user=<user>^Aauth=Bearer <token>^A^A."""
    return b"user=" + user.encode("utf-8") + b"\x01auth=Bearer " + token.encode("ascii") + b"\x01\x01"


def oauthbearer_message(user: str, token: str, *, host: str, port: int) -> bytes:
    """RFC 7628 §3.1: gs2 header with the authzid (`,` and `=` escaped), then key=value pairs."""
    saslname = user.replace("=", "=3D").replace(",", "=2C")
    return (
        b"n,a=" + saslname.encode("utf-8") + b",\x01host=" + host.encode("idna" if not host.isascii() else "ascii")
        + b"\x01port=" + str(port).encode() + b"\x01auth=Bearer " + token.encode("ascii") + b"\x01\x01"
    )


def initial_response(mechanism: str, settings, token: str) -> bytes:
    if mechanism == "XOAUTH2":
        return xoauth2_message(settings.username, token)
    return oauthbearer_message(settings.username, token, host=settings.host, port=settings.effective_port)


def describe_failure(challenge: bytes | str | None) -> str:
    """The server's base64 JSON failure challenge as text, e.g. 'status 401, scope mail'."""
    if not challenge:
        return ""
    raw = challenge.encode("ascii", "replace") if isinstance(challenge, str) else challenge
    try:
        data = json.loads(base64.b64decode(raw.strip(), validate=False) or b"null")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return ""
    if not isinstance(data, dict):
        return ""
    parts = [f"{key} {str(data[key])[:200]}" for key in ("status", "schemes", "scope") if key in data]
    return ", ".join(parts)


# --- choice and guards -------------------------------------------------------------------

def choose(settings, offered: list[str]) -> str:
    forced = (settings.sasl_mechanism or "").upper()
    if forced:
        if forced not in offered:
            raise MechanismUnavailable(
                f"the server does not offer {forced} (it offers: {', '.join(offered) or 'nothing'})",
                hint="clear the SASL mechanism setting to let the server's offer decide",
                offered=offered, transient=False,
            )
        return forced
    for mechanism in MECHANISMS:
        if mechanism in offered:
            return mechanism
    raise MechanismUnavailable(
        f"the server at {where(settings)} offers neither OAUTHBEARER nor XOAUTH2 "
        f"(it offers: {', '.join(offered) or 'nothing'})",
        hint="the server does not take OAuth2 logins; use a user/password credential, or enable OAuth2 on the server",
        offered=offered, transient=False,
    )


def refuse_without_tls(settings, encrypted: bool, *, upgrade_offered: bool) -> None:
    if encrypted or settings.allow_plain_without_tls:
        return
    raise InsecureAuthRefused(
        f"refused to send an OAuth2 access token over an unencrypted connection to {where(settings)}; "
        "the token was not sent",
        hint=("the server offers STARTTLS: set protection to STARTTLS mandatory (or use SSL/TLS)"
              if upgrade_offered else "use protection SSL/TLS or STARTTLS mandatory"),
        transient=False,
    )


def _take_message(client, mechanism: str, detail: dict) -> str:
    """The base64 initial response; the client no longer holds the token afterwards."""
    detail["mechanism"] = mechanism
    token, client._password = client._password or "", None
    return b64(initial_response(mechanism, client.settings, token))


def _failed(settings, mechanism: str, reply: str, challenge) -> AuthenticationFailed:
    why = describe_failure(challenge)
    err = auth_failed(settings, reply + (f" (server said: {why})" if why else ""), mechanism=mechanism)
    name = f"credential '{settings.credential_name}'" if settings.credential_name else "the OAuth2 credential"
    err.hint = (
        f"the server refused the access token of {name}: the token's user must be the mailbox user "
        f"{settings.username}, and the app needs the mail permission (scope) for this protocol; "
        "a revoked token is replaced at the next attempt"
    )
    return err


def _temporary(settings, reply: str) -> MailError:
    return MailError(
        f"temporary authentication failure for user {settings.username}: {reply}",
        hint="the server could not check the token (its OAuth2 provider may be unreachable); try again later",
        step="auth", transient=True,
    )


# --- IMAP --------------------------------------------------------------------------------

def imap_oauth2(client, detail: dict) -> None:
    """AUTHENTICATE with SASL-IR when offered, else the initial response after the continuation."""
    import imaplib

    s, imap = client.settings, client._imap
    offered = client.auth_mechanisms
    refuse_without_tls(s, client.encrypted, upgrade_offered="STARTTLS" in client.capabilities)
    mechanism = choose(s, offered)
    message = _take_message(client, mechanism, detail).encode("ascii")
    sasl_ir = "SASL-IR" in client.capabilities
    challenge = None
    try:
        tag = imap._new_tag()
        imap.send(tag + b" AUTHENTICATE " + mechanism.encode() + ((b" " + message) if sasl_ir else b"") + CRLF)
        sent = sasl_ir
        while imap.tagged_commands[tag] is None:
            if imap._get_response() is None:  # a continuation request
                if not sent:
                    imap.send(message + CRLF)
                    sent = True
                else:  # the failure challenge: answer with an empty line
                    challenge = imap.continuation_response
                    imap.send(CRLF)
        message = b""
        typ, data = imap._command_complete("AUTHENTICATE", tag)
    except imaplib.IMAP4.abort as exc:
        from ._base import is_timeout

        if is_timeout(exc):
            raise network_error(TimeoutError(), s, step="auth", doing="authenticating") from None
        raise ConnectError(f"the server at {where(s)} closed the connection during authentication", step="auth") from None
    except imaplib.IMAP4.error as exc:
        typ, data = "BAD", [str(exc.args[0] if exc.args else "").encode()]
    except (OSError, EOFError) as exc:
        raise network_error(exc, s, step="auth", doing="authenticating") from None
    finally:
        message = b""
        imap._cmd_log = {}
    reply = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
    if typ != "OK":
        if "[UNAVAILABLE]" in reply:
            raise _temporary(s, reply)
        raise _failed(s, mechanism, reply, challenge)
    imap.state = "AUTH"
    client.auth_mechanism = mechanism
    import re

    match = re.match(r"\[CAPABILITY ([^\]]*)\]", reply)
    if match:
        imap.untagged_responses["CAPABILITY"] = [match.group(1).encode()]


# --- POP3 --------------------------------------------------------------------------------

def pop3_oauth2(client, detail: dict) -> None:
    """AUTH <mechanism> <initial response> (RFC 5034)."""
    import poplib

    s, pop = client.settings, client._pop
    refuse_without_tls(s, client.encrypted, upgrade_offered="STLS" in client.capabilities)
    mechanism = choose(s, list(client.sasl_mechanisms))
    message = _take_message(client, mechanism, detail)
    challenge = None
    try:
        pop._putcmd(f"AUTH {mechanism} {message}")
        message = ""
        line, _ = pop._getline()
        if line == b"+" or line.startswith(b"+ "):  # a challenge, not +OK
            challenge = line[1:].strip()
            pop._putcmd("")
            line, _ = pop._getline()
    except (OSError, EOFError) as exc:
        raise network_error(exc, s, step="auth", doing="authenticating") from None
    except poplib.error_proto as exc:  # poplib says "-ERR EOF" when the server hangs up
        raise ConnectError(f"the server at {where(s)} closed the connection during authentication: {exc}",
                           step="auth") from None
    finally:
        message = ""
    reply = line.decode("utf-8", "replace")
    if not reply.startswith("+OK"):
        if "[SYS/TEMP]" in reply or "[IN-USE]" in reply:
            raise _temporary(s, reply)
        raise _failed(s, mechanism, reply, challenge)
    client.auth_mechanism = mechanism


# --- SMTP --------------------------------------------------------------------------------

def smtp_oauth2(client, detail: dict) -> None:
    """AUTH <mechanism> <initial response> (RFC 4954); needs Postfix line_length_limit >= the line."""
    s, smtp = client.settings, client._smtp
    refuse_without_tls(s, client.encrypted, upgrade_offered="starttls" in client.extensions)
    offered = client.auth_mechanisms
    if not offered and not client.encrypted and "starttls" in client.extensions:
        raise MechanismUnavailable("the server offers AUTH only after STARTTLS",
                                   hint="set protection to STARTTLS mandatory", offered=[], transient=False)
    mechanism = choose(s, offered)
    message = _take_message(client, mechanism, detail)
    challenge = None
    try:
        code, msg = client._guard(lambda: smtp.docmd("AUTH", f"{mechanism} {message}"), "auth", "authenticating")
        message = ""
        if code == 334:
            challenge = msg
            code, msg = client._guard(lambda: smtp.docmd(""), "auth", "authenticating")
    finally:
        message = ""
    if code == 235:
        client.auth_mechanism = mechanism
        return
    reply = f"{code} {msg.decode('utf-8', 'replace')}"
    if 400 <= code < 500:
        raise _temporary(s, reply)
    raise _failed(s, mechanism, reply, challenge)
