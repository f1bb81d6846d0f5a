"""SMTP client: the session (connect, TLS per protection, EHLO, AUTH PLAIN/LOGIN/CRAM-MD5/OAuth2)
as hooks of the session base; sending is in smtp_send.py.

Built on smtplib (its reply parsing and STARTTLS) with a socket we open ourselves, so that
DNS, TCP and TLS are timed separately and every socket has the connection's timeout.
AUTH is built by hand with UTF-8 bytes: smtplib's login() refuses non-ASCII passwords.
"""
from __future__ import annotations

import functools
import smtplib
import socket

from .errors import ConnectError, ProtocolError, SMTPReplyError
from .greeting import unexpected_greeting
from .opener import SocketOpener
from .sasl import preferred
from .session import MailSession, SaslReply
from .smtp_send import SMTPSending, reply_text
from .settings import MailSettings
from .trace import Trace
from .wording import (
    after_tls_handshake_error,
    is_timeout,
    network_error,
    not_offered,
    only_after_starttls,
    refuse_plain,
    starttls_refused,
    where,
)

__all__ = ["SMTPClient"]


@functools.lru_cache(maxsize=1)
def _local_hostname() -> str:
    # Once per process: socket.getfqdn() may hit DNS, smtplib would repeat it per connection.
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn else "[127.0.0.1]"


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP on a socket that is already connected (and maybe TLS-wrapped)."""

    def __init__(self, sock: socket.socket, *, host: str, local_hostname: str, timeout: float) -> None:
        self._ready_sock = sock
        super().__init__("", 0, local_hostname=local_hostname, timeout=timeout)
        self._host = host  # for STARTTLS's server_hostname (certificate check)

    def _get_socket(self, host, port, timeout):  # noqa: D401 - smtplib hook
        sock, self._ready_sock = self._ready_sock, None
        return sock

    first_line = b""  # the greeting's first line as sent (smtplib keeps only what follows the code)

    def getreply(self):
        if not self.first_line and self.file is None and self.sock is not None:
            self.file = self.sock.makefile("rb")
            self.first_line = self.file.peek(1).split(b"\n", 1)[0]
        return super().getreply()


class SMTPClient(SMTPSending, MailSession):
    """Context manager: connect, TLS per protection, EHLO, AUTH per authentication.

    >>> with SMTPClient(settings, password) as smtp:
    ...     result = smtp.send(sender=..., recipients=[...], message=raw_bytes)
    """

    protocol = "smtp"
    implicit_port = "SMTPS port (465)"

    def __init__(
        self,
        settings: MailSettings,
        password: str | None,
        *,
        local_hostname: str | None = None,
        trace: Trace | None = None,
        pipelining: bool = True,
        mechanism: str | None = None,
        opener: SocketOpener | None = None,
    ) -> None:
        """`pipelining=False` sends MAIL/RCPT/DATA one by one even when the server offers
        PIPELINING; `mechanism` forces "PLAIN" or "LOGIN" (plain) instead of the best offered."""
        super().__init__(settings, password, trace=trace, mechanism=mechanism, opener=opener)
        self._local_hostname = local_hostname
        self._use_pipelining = pipelining
        self._smtp: _SMTP | None = None
        self.extensions: dict[str, str] = {}
        self.extensions_before_tls: dict[str, str] = {}
        self.max_size: int | None = None

    # --- session ------------------------------------------------------------------------

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(quit=exc_type is None or not isinstance(exc, ConnectError))

    def _read_greeting(self, sock, detail: dict) -> None:
        s = self.settings
        self._smtp = _SMTP(
            sock, host=s.tls_hostname, local_hostname=self._local_hostname or _local_hostname(), timeout=s.timeout
        )
        code, msg = self._guard(lambda: self._smtp.connect(s.host, s.effective_port), "greeting", "reading the greeting")
        self.greeting = reply_text(msg)
        if code not in (220, 421, 554):  # not an SMTP greeting: quoted only if a mail server's
            raise unexpected_greeting(s, self._smtp.first_line)
        detail.update(code=code, text=self.greeting)
        if code != 220:
            raise ProtocolError(
                f"the server at {where(s)} refused the session: {code} {self.greeting}",
                code=code, reply=self.greeting, step="greeting", transient=400 <= code < 500,
                hint="the server does not accept mail from this client right now",
            )

    def _drop(self) -> None:
        self.close(quit=False)

    def close(self, *, quit: bool = True) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if quit:
            try:
                smtp.quit()
                return
            except (smtplib.SMTPException, OSError):
                pass
        try:
            smtp.close()
        except OSError:
            pass

    def _guard(self, fn, step: str, doing: str):
        """Run an smtplib call; map disconnects, timeouts and TLS errors to our errors."""
        try:
            return fn()
        except smtplib.SMTPServerDisconnected as exc:
            raise self._disconnected(exc, step=step, doing=doing) from None
        except smtplib.SMTPResponseException as exc:
            raise SMTPReplyError(
                f"{doing}: {exc.smtp_code} {reply_text(exc.smtp_error)}", code=exc.smtp_code,
                reply=reply_text(exc.smtp_error), step=step,
            ) from None
        except (OSError, EOFError) as exc:
            raise network_error(exc, self.settings, step=step, doing=doing) from None

    def _ehlo(self) -> None:
        smtp = self._smtp
        code, msg = self._guard(smtp.ehlo, "capabilities", "sending EHLO")
        if code != 250:
            code, msg = self._guard(smtp.helo, "capabilities", "sending HELO")
            if code != 250:
                raise ProtocolError(
                    f"the server refused EHLO and HELO: {code} {reply_text(msg)}",
                    code=code, reply=reply_text(msg), step="capabilities", transient=400 <= code < 500,
                )
        self.extensions = {k.lower(): v.strip() for k, v in smtp.esmtp_features.items()}
        size = self.extensions.get("size", "")
        self.max_size = int(size) if size.isdigit() and int(size) > 0 else None

    def _before_starttls(self) -> None:
        self._ehlo()
        self.extensions_before_tls = dict(self.extensions)

    def _starttls_offered(self) -> bool:
        return "starttls" in self.extensions

    def _start_tls(self, context):
        s, smtp = self.settings, self._smtp
        try:
            smtp.starttls(context=context)
        except smtplib.SMTPResponseException as exc:
            raise starttls_refused(s, "STARTTLS", f"{exc.smtp_code} {reply_text(exc.smtp_error)}",
                                   transient=400 <= exc.smtp_code < 500) from None
        except smtplib.SMTPServerDisconnected as exc:
            if is_timeout(exc):
                raise network_error(TimeoutError(), s, step="tls", doing="starting TLS") from None
            raise ConnectError(f"the server at {where(s)} closed the connection during STARTTLS", step="tls") from None
        except (OSError, ValueError) as exc:
            raise after_tls_handshake_error(exc, s, "smtp") from None
        return smtp.sock

    def _capabilities(self, detail: dict) -> None:
        if self.encrypted or not self.extensions_before_tls:
            self._ehlo()  # (again) after STARTTLS, or the first time
        detail["extensions"] = dict(self.extensions)
        if self.extensions_before_tls:
            detail["extensions_before_tls"] = dict(self.extensions_before_tls)

    def _needs_auth(self) -> bool:
        return self.settings.authentication != "none"

    # --- authentication -------------------------------------------------------------------

    @property
    def auth_mechanisms(self) -> list[str]:
        return self.extensions.get("auth", "").upper().split()

    def _offered(self) -> list[str]:
        return self.auth_mechanisms

    def _sasl_offered(self) -> list[str]:
        offered = self.auth_mechanisms
        if not offered and not self.encrypted and "starttls" in self.extensions:
            raise only_after_starttls("AUTH only after STARTTLS", [])
        return offered

    def _choose_password_mechanism(self, offered: list[str]) -> str:
        s = self.settings
        if s.authentication == "plain" and not self.encrypted and not s.allow_plain_without_tls:
            raise refuse_plain(s, starttls_offered="starttls" in self.extensions, label="password (AUTH PLAIN/LOGIN)")
        if not self._sasl_offered():
            raise not_offered(
                f"the server at {where(s)} does not offer SMTP AUTH", [],
                "use the server's submission port (587 with STARTTLS, or 465 with SSL/TLS), "
                "or set authentication to None if the server relays for this host",
            )
        if s.authentication == "encrypted":
            mechanism = preferred("encrypted", offered)
            if mechanism is None:
                raise not_offered(
                    f"the server does not offer CRAM-MD5 (it offers: {', '.join(offered)})", offered,
                    "choose Plain user/password together with SSL/TLS or STARTTLS mandatory, or enable CRAM-MD5 on the server",
                )
            return mechanism
        if self._forced_mechanism in ("PLAIN", "LOGIN") and self._forced_mechanism in offered:
            return self._forced_mechanism
        if "PLAIN" in offered:
            return "PLAIN"
        if "LOGIN" in offered:
            return "LOGIN"
        raise not_offered(
            f"the server offers neither PLAIN nor LOGIN (it offers: {', '.join(offered)})", offered,
            "choose Encrypted user/password if the server offers CRAM-MD5",
        )

    def _sasl_send(self, line: str, *, start: bool) -> SaslReply:
        smtp = self._smtp
        code, msg = self._guard(lambda: smtp.docmd("AUTH", line) if start else smtp.docmd(line), "auth", "authenticating")
        reply = f"{code} {reply_text(msg)}"
        if code == 334:
            return SaslReply(False, reply, challenge=msg)
        return SaslReply(code == 235 or code == 503 and b"already" in msg.lower(), reply, temporary=400 <= code < 500)

    def _sasl_cancel(self, reply: SaslReply) -> SaslReply:
        self._guard(lambda: self._smtp.docmd("*"), "auth", "cancelling AUTH")
        return reply
