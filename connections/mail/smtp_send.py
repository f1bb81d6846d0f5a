"""Sending over an SMTP session: one transaction per message (MAIL/RCPT/DATA, pipelined when the
server offers PIPELINING: two round trips instead of 2 + n), address checks, RSET, NOOP, and
what a connection lost during DATA means for the message.

A mixin of smtp.SMTPClient (it uses the session's `_smtp`, `settings`, `extensions`, `max_size`
and `close`). No Django.
"""
from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass, field
from typing import Callable

from .errors import ConnectError, MailError, ProtocolError, SMTPReplyError
from .wording import is_timeout, network_error, where

__all__ = ["SMTPSending", "SendResult", "queue_id_of", "reply_text"]

_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
_CRLF = b"\r\n"
# A plain dot-atom address: smtplib.quoteaddr would return it as <it>, after an email.utils
# parse that costs more CPU than the rest of building the envelope.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


def _quoted(address: str) -> str:
    """smtplib.quoteaddr(address), without its parse when the address is plain."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


@dataclass
class SendResult:
    """Which recipients the server accepted, and the refusals with the server's reply."""

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    reply: tuple[int, str] = (0, "")  # the final reply to DATA (queue id etc.)
    replies: dict[str, tuple[int, str]] = field(default_factory=dict)  # each RCPT TO's reply
    queue_id: str = ""  # from the final reply, e.g. "250 2.0.0 Ok: queued as 4Xyz"


_QUEUE_ID = re.compile(r"\bqueued as ([A-Za-z0-9][A-Za-z0-9.@<>_-]*)|\bid=([A-Za-z0-9][A-Za-z0-9._-]*)", re.I)


def queue_id_of(reply: str) -> str:
    """The queue id in a final reply ("queued as 4Xyz…", Exim's "id=1abc-…"), or ""."""
    found = _QUEUE_ID.search(reply or "")
    return (found.group(1) or found.group(2)).strip("<>") if found else ""


# The two endings of a connection lost after 354 (issue 19): the server reset the connection
# with our data still unread (it never saw the final dot: not delivered), or it closed / went
# silent after reading everything (it may have accepted the message).
INCOMPLETE = " (closed during DATA: the message was incomplete and not delivered)"
AFTER_DATA = " (after the data, before the reply: may have been delivered)"


def _was_reset(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _after_data(err: ConnectError, *, reset: bool) -> None:
    if reset:
        err.message += INCOMPLETE  # the hint stays (e.g. too slow: raise the timeout)
        err.maybe_delivered = False
    else:
        err.message += AFTER_DATA
        err.hint = "the message may have been delivered; sending it again may duplicate it"
        err.maybe_delivered = True


def reply_text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


class SMTPSending:
    """What a logged-in SMTP session can do."""

    _smtp: smtplib.SMTP | None
    _use_pipelining: bool
    extensions: dict[str, str]
    max_size: int | None

    def _disconnected(self, exc: BaseException, *, step: str, doing: str, data_sent: bool = False,
                      in_data: bool = False) -> ConnectError:
        """smtplib reports timeouts and resets as SMTPServerDisconnected: tell them apart."""
        self._smtp = None
        if is_timeout(exc):
            err = network_error(TimeoutError(), self.settings, step=step, doing=doing)
        else:
            err = ConnectError(
                f"the server at {where(self.settings)} closed the connection while {doing}",
                hint="the server may be overloaded, or refuse this client; try again later",
                step=step,
            )
        if in_data or data_sent:
            _after_data(err, reset=not data_sent or _was_reset(exc))
        err.args = (err.message,)
        return err

    def _require(self) -> smtplib.SMTP:
        if self._smtp is None:
            raise ConnectError("the SMTP session is closed", step="command")
        return self._smtp

    def _envelope(self, sender: str, recipients: list[str], message: bytes | None) -> tuple[str, list[str], str, str]:
        """Addresses and MAIL FROM parameters; SMTPUTF8 only when an address needs it."""
        options = []
        if message is not None and "size" in self.extensions:
            options.append(f"SIZE={len(message)}")
        if message is not None and "8bitmime" in self.extensions and not message.isascii():
            options.append("BODY=8BITMIME")
        encoding = "ascii"
        if not (sender.isascii() and all(r.isascii() for r in recipients)):
            if "smtputf8" in self.extensions:
                options.append("SMTPUTF8")
                encoding = "utf-8"
            else:
                sender = _idna_address(sender)
                recipients = [_idna_address(r) for r in recipients]
        return sender, recipients, (" " + " ".join(options)) if options else "", encoding

    def send(self, *, sender: str, recipients: list[str], message: bytes,
             before_data: Callable[[], None] | None = None) -> SendResult:
        """One SMTP transaction. Returns per-recipient results.

        `before_data` is called once DATA is on its way to the server, while its replies are
        awaited (so the caller's record that the data started costs no round trip of its own),
        and always before the message data goes out; if it raises, the connection is closed
        (the server drops the unfinished message) and the error propagates.

        Raises SMTPReplyError when MAIL FROM or DATA is refused or every recipient is refused
        (transient for 4xx), ConnectError when the connection drops (transient; with
        `maybe_delivered` if it dropped after the data was sent, before the final reply).
        """
        smtp = self._require()
        if not recipients:
            raise ProtocolError("no recipients", transient=False)
        if isinstance(message, str):
            message = message.encode("utf-8")
        if self.max_size is not None and len(message) > self.max_size:
            # The server would refuse it after the whole transfer: refuse it before.
            raise SMTPReplyError(
                f"the message ({len(message)} bytes) is larger than the server accepts ({self.max_size} bytes, EHLO SIZE)",
                code=552, reply="message size exceeds the server's SIZE limit",
                hint="send smaller attachments, or ask the server's administrator to raise the limit",
            )
        sender, recipients, params, encoding = self._envelope(sender, recipients, message)
        # Dot-stuffing: most messages have no line starting with a dot, and the regex's scan of
        # every byte is then the costliest step of sending them.
        payload = _DOT_AT_LINE_START.sub(b"..", message) if message[:1] == b"." or b"\n." in message else message
        payload += b".\r\n" if payload.endswith(_CRLF) else b"\r\n.\r\n"
        try:
            commands = [f"MAIL FROM:{_quoted(sender)}{params}\r\n".encode(encoding)]
            commands += [f"RCPT TO:{_quoted(r)}\r\n".encode(encoding) for r in recipients]
        except UnicodeEncodeError:
            raise ProtocolError(
                "an address is not ASCII and the server does not offer SMTPUTF8", transient=False
            ) from None
        data_sent = in_data = False
        try:
            if self._use_pipelining and "pipelining" in self.extensions:
                smtp.send(b"".join(commands) + b"DATA\r\n")
                self._announce_data(before_data)
                code, msg = smtp.getreply()
                if code == 421:
                    raise self._dropped(code, msg)
                replies = []
                for _ in recipients:
                    replies.append(smtp.getreply())
                    if replies[-1][0] == 421:  # the server is closing: no more replies follow
                        raise self._dropped(*replies[-1])
                data_code, data_msg = smtp.getreply()
            else:
                smtp.send(commands[0])
                code, msg = smtp.getreply()
                if code != 250:
                    raise self._refused("MAIL FROM", sender, code, msg)
                replies = []
                for cmd in commands[1:]:
                    smtp.send(cmd)
                    replies.append(smtp.getreply())
                    if replies[-1][0] == 421:
                        break
                data_code, data_msg = None, b""
            if code != 250:
                if data_code == 354:  # a server that accepted DATA anyway: end it empty
                    smtp.send(b".\r\n")
                    smtp.getreply()
                raise self._refused("MAIL FROM", sender, code, msg)
            result = SendResult()
            for rcpt, (rcode, rmsg) in zip(recipients, replies):
                result.replies[rcpt] = (rcode, reply_text(rmsg))
                if rcode in (250, 251):
                    result.accepted.append(rcpt)
                else:
                    if rcode == 421:
                        raise self._dropped(rcode, rmsg)
                    result.refused[rcpt] = (rcode, reply_text(rmsg))
            if not result.accepted:
                if data_code == 354:
                    smtp.send(b".\r\n")
                    smtp.getreply()
                self._rset_quietly()
                first = next(iter(result.refused.values()))
                code = next((c for c, _ in result.refused.values() if 400 <= c < 500), first[0])
                detail = "; ".join(f"{r}: {c} {t}" for r, (c, t) in result.refused.items())
                raise SMTPReplyError(
                    f"every recipient was refused ({detail})", code=code, reply=first[1],
                    refused=result.refused, hint="check the recipient addresses",
                )
            if data_code is None:
                smtp.send(b"DATA\r\n")
                self._announce_data(before_data)
                data_code, data_msg = smtp.getreply()
            if data_code != 354:
                raise self._refused("DATA", None, data_code, data_msg)
            in_data = True
            smtp.send(payload)
            data_sent = True
            code, msg = smtp.getreply()
            if code != 250:
                raise self._refused("the message", None, code, msg)
            result.reply = (code, reply_text(msg))
            result.queue_id = queue_id_of(result.reply[1])
            return result
        except smtplib.SMTPServerDisconnected as exc:
            raise self._disconnected(exc, step="command", doing="sending", data_sent=data_sent,
                                     in_data=in_data) from None
        except (OSError, EOFError) as exc:
            self.close(quit=False)
            err = network_error(exc, self.settings, step="command", doing="sending")
            if isinstance(err, ConnectError) and in_data:
                _after_data(err, reset=not data_sent or _was_reset(exc))
                err.args = (err.message,)
            raise err from None
        finally:
            if encoding != "ascii" and self._smtp is not None:
                self._smtp.command_encoding = "ascii"

    def _announce_data(self, before_data: Callable[[], None] | None) -> None:
        """Run the caller's "data started" step while the server answers DATA."""
        if before_data is not None:
            try:
                before_data()
            except BaseException:
                self.close(quit=False)  # the server drops the unfinished message
                raise

    def _refused(self, what: str, address: str | None, code: int, msg: bytes) -> MailError:
        if code == 421 or code == -1:
            return self._dropped(code, msg)
        self._rset_quietly()
        subject = f"{what} <{address}>" if address else what
        return SMTPReplyError(
            f"the server refused {subject}: {code} {reply_text(msg)}", code=code, reply=reply_text(msg),
            hint="try again later" if 400 <= code < 500 else "",
        )

    def _dropped(self, code: int, msg: bytes) -> ConnectError:
        self.close(quit=False)
        return ConnectError(
            f"the server at {where(self.settings)} is closing the session: {code} {reply_text(msg)}",
            hint="try again later", step="command",
        )

    def _rset_quietly(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close(quit=False)

    def check_addresses(self, *, sender: str, recipients: list[str]) -> dict[str, tuple[int, str]]:
        """MAIL FROM + RCPT TO for each address, then RSET: nothing is sent.

        Returns every recipient's (code, text); 250/251 means accepted.
        """
        smtp = self._require()
        sender, encoded, params, encoding = self._envelope(sender, list(recipients), None)
        try:
            smtp.send(f"MAIL FROM:{_quoted(sender)}{params}\r\n".encode(encoding))
            code, msg = smtp.getreply()
            if code != 250:
                raise self._refused("MAIL FROM", sender, code, msg)
            results: dict[str, tuple[int, str]] = {}
            for original, rcpt in zip(recipients, encoded):
                smtp.send(f"RCPT TO:{_quoted(rcpt)}\r\n".encode(encoding))
                rcode, rmsg = smtp.getreply()
                if rcode == 421:
                    raise self._dropped(rcode, rmsg)
                results[original] = (rcode, reply_text(rmsg))
            self.reset()
            return results
        except smtplib.SMTPServerDisconnected as exc:
            raise self._disconnected(exc, step="command", doing="checking addresses") from None
        except (OSError, EOFError) as exc:
            self.close(quit=False)
            raise network_error(exc, self.settings, step="command", doing="checking addresses") from None
        finally:
            if encoding != "ascii" and self._smtp is not None:
                self._smtp.command_encoding = "ascii"

    def reset(self) -> None:
        """RSET: abandon the current transaction."""
        smtp = self._require()
        code, msg = self._guard(smtp.rset, "command", "sending RSET")
        if code != 250:
            raise SMTPReplyError(f"the server refused RSET: {code} {reply_text(msg)}", code=code, reply=reply_text(msg))

    def noop(self) -> None:
        """NOOP: check that the session is alive (raises ConnectError when it is not)."""
        smtp = self._require()
        code, msg = self._guard(smtp.noop, "command", "sending NOOP")
        if code == 421:
            raise self._dropped(code, msg)


def _idna_address(address: str) -> str:
    """user@bücher.example -> user@xn--bcher-kva.example (the local part must be ASCII)."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address
