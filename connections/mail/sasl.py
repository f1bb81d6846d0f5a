"""SASL mechanisms: what a client sends for PLAIN, LOGIN, CRAM-MD5, XOAUTH2 and OAUTHBEARER.

Each mechanism is an object in `MECHANISMS` (registry order = preference within a family); the
session base (session.py) runs the exchange with it over any of the three protocols, and the
IDLE speaker (idle.py) builds its messages with the same objects. Adding a mechanism means one
class and one registry entry here. No Django.

OAuth2 (RFC 7628): the "password" is then the access token. The mechanism is chosen from what
the server offers (OAUTHBEARER, the standard, before XOAUTH2) unless `settings.sasl_mechanism`
forces one. On failure the server sends a challenge with base64 JSON (`status`, `scope`,
`schemes`: no secret), answered with an empty line before the final reply; it goes into the
error message.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json

from .errors import MailError, MechanismUnavailable
from .settings import MailSettings
from .wording import BACKEND_UNAVAILABLE_HINT, auth_failed, where

# --- encodings -----------------------------------------------------------------------------

def sasl_plain(username: str, password: str) -> bytes:
    """RFC 4616 PLAIN message, UTF-8 (the stdlib login() helpers accept ASCII only)."""
    return b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8")


def cram_md5_response(username: str, password: str, challenge: bytes) -> bytes:
    """RFC 2195: user SP hex(HMAC-MD5(password, challenge)), UTF-8 bytes (not base64)."""
    digest = hmac.new(password.encode("utf-8"), challenge, "md5").hexdigest()
    return username.encode("utf-8") + b" " + digest.encode("ascii")


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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_challenge(text: str | bytes) -> bytes:
    if isinstance(text, str):
        text = text.encode("ascii", "replace")
    try:
        return base64.b64decode(text.strip(), validate=False)
    except (ValueError, TypeError):
        return b""


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


# --- mechanisms ----------------------------------------------------------------------------

class Mechanism:
    """One SASL mechanism. `family`: "plain" (the password itself: TLS needed), "encrypted"
    (challenge-response) or "oauth2" (an access token)."""

    family = "plain"
    temporary_hint = BACKEND_UNAVAILABLE_HINT

    def __init__(self, name: str) -> None:
        self.name = name

    def initial(self, settings: MailSettings, secret: str) -> bytes | None:
        """The initial response (sent with the command when the protocol allows), or None."""
        return None

    def respond(self, settings: MailSettings, secret: str, challenge: bytes, step: int) -> bytes | None:
        """The answer to the `step`-th server challenge (decoded); None cancels the exchange."""
        return None

    def failed(self, settings: MailSettings, reply: str, challenge: bytes | str | None) -> MailError:
        """The error for a refused login; `challenge` is the last raw challenge answered."""
        return auth_failed(settings, reply, mechanism=self.name)


class Plain(Mechanism):
    def initial(self, settings, secret):
        return sasl_plain(settings.username, secret)


class Login(Mechanism):
    """SASL LOGIN (SMTP): user name, then password, each on request."""

    def respond(self, settings, secret, challenge, step):
        return (settings.username.encode("utf-8"), secret.encode("utf-8"))[step] if step < 2 else None


class CramMD5(Mechanism):
    family = "encrypted"

    def respond(self, settings, secret, challenge, step):
        return cram_md5_response(settings.username, secret, challenge) if step == 0 else None


class OAuth2(Mechanism):
    family = "oauth2"
    temporary_hint = "the server could not check the token (its OAuth2 provider may be unreachable); try again later"

    def respond(self, settings, secret, challenge, step):
        return b"" if step == 0 else None  # the failure challenge (JSON) is answered with an empty line

    def failed(self, settings, reply, challenge):
        why = describe_failure(challenge)
        err = auth_failed(settings, reply + (f" (server said: {why})" if why else ""), mechanism=self.name)
        name = f"credential '{settings.credential_name}'" if settings.credential_name else "the OAuth2 credential"
        err.hint = (
            f"the server refused the access token of {name}: the token's user must be the mailbox user "
            f"{settings.username}, and the app needs the mail permission (scope) for this protocol; "
            "a revoked token is replaced at the next attempt"
        )
        return err


class OAuthBearer(OAuth2):
    def initial(self, settings, secret):
        return oauthbearer_message(settings.username, secret, host=settings.host, port=settings.effective_port)


class XOAuth2(OAuth2):
    def initial(self, settings, secret):
        return xoauth2_message(settings.username, secret)


MECHANISMS: dict[str, Mechanism] = {
    m.name: m for m in (
        Plain("PLAIN"), Login("LOGIN"), CramMD5("CRAM-MD5"), OAuthBearer("OAUTHBEARER"), XOAuth2("XOAUTH2"),
    )
}


def mechanism(name: str) -> Mechanism:
    """The registered mechanism, or a plain-password one for a protocol's own login command
    (IMAP LOGIN, POP3 USER/PASS and APOP): it only words the failure."""
    return MECHANISMS.get(name) or Mechanism(name)


def preferred(family: str, offered: list[str]) -> str | None:
    """The first registered mechanism of `family` the server offers."""
    return next((m.name for m in MECHANISMS.values() if m.family == family and m.name in offered), None)


def choose_oauth2(settings: MailSettings, offered: list[str]) -> str:
    forced = (settings.sasl_mechanism or "").upper()
    if forced:
        if forced not in offered:
            raise MechanismUnavailable(
                f"the server does not offer {forced} (it offers: {', '.join(offered) or 'nothing'})",
                hint="clear the SASL mechanism setting to let the server's offer decide",
                offered=offered, transient=False,
            )
        return forced
    choice = preferred("oauth2", offered)
    if choice is None:
        names = [m.name for m in MECHANISMS.values() if m.family == "oauth2"]
        raise MechanismUnavailable(
            f"the server at {where(settings)} offers neither {' nor '.join(names)} "
            f"(it offers: {', '.join(offered) or 'nothing'})",
            hint="the server does not take OAuth2 logins; use a user/password credential, or enable OAuth2 on the server",
            offered=offered, transient=False,
        )
    return choice
