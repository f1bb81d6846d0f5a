"""manage.py send_message <tenant-slug> <connection-name> --to … --subject … (--body … | --body-file F
                                                                         | --template NAME --context-file F)

Queues a message in the tenant's outbox (the workers send it; with --send-after not before
then), or with --now sends it from this process and prints the server's answer for every
recipient (exit status 1 if it was not sent). --json prints the record as JSON instead: per
recipient the server's reply code and text and the queue id.
"""
from __future__ import annotations

import json
import mimetypes
import sys
import time
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.errors import TenantMailError
from connections.management.exits import command_error, usage_error
from connections.models import OutboxStatus
from connections.services.access.lookup import find_connection
from connections.services.outbound.addresses import split_addresses
from connections.services.outbound.enqueue import enqueue
from connections.services.outbound.mime import AttachmentIn
from connections.services.outbound.sending import send_now


def _read_text(path: str, what: str) -> str:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise usage_error(f"Cannot read the {what} file {path}: {exc.strerror or exc}.") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise usage_error(f"The {what} file {path} is not UTF-8 text.") from None


def _read_context(path: str) -> dict:
    text = _read_text(path, "context")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise usage_error(f"The context file {path} is not JSON: {exc.msg} at line {exc.lineno}.") from None
    if not isinstance(value, dict):
        raise usage_error(f"The context file {path} must hold a JSON object ({{\"name\": value, …}}).")
    return value


def _parse_moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise usage_error(f"--send-after {value!r} is not a date and time like 2026-12-24T08:00 "
                           "or 2026-12-24 08:00+01:00.") from None
    return moment  # a naive moment is read in the server's time zone by the outbox


def _as_json(message, *, error: str = "") -> str:
    """The record of a message as JSON: what the operator (or a script) needs to know."""
    return json.dumps({
        "id": message.pk,
        "message_id": message.message_id,
        "status": message.status,
        "size": message.size,
        "send_after": message.send_after.isoformat() if message.send_after else None,
        "next_attempt_at": message.next_attempt_at.isoformat() if message.next_attempt_at else None,
        "attempts": message.attempts,
        "last_error": message.last_error or error,
        "recipients": {address: message.recipient_results.get(address, {"status": "pending"})
                       for address in message.envelope_to},
    }, indent=2, ensure_ascii=False)


class Command(BaseCommand):
    help = "Queue (or with --now, send at once) a message through a tenant's outbound connection."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("connection", help="outbound connection name")
        parser.add_argument("--to", action="append", default=[], metavar="ADDRESS",
                            help="recipient; repeat, or separate with commas")
        parser.add_argument("--cc", action="append", default=[], metavar="ADDRESS")
        parser.add_argument("--bcc", action="append", default=[], metavar="ADDRESS")
        parser.add_argument("--from", dest="from_address", metavar="ADDRESS",
                            help="From (default: the connection's default From)")
        parser.add_argument("--reply-to", action="append", default=None, metavar="ADDRESS")
        parser.add_argument("--subject", default="",
                            help="the subject (default: the template's, else the connection's default Subject)")
        body = parser.add_mutually_exclusive_group()
        body.add_argument("--body", help="the text body")
        body.add_argument("--body-file", metavar="F", help="file with the text body (UTF-8; - for stdin)")
        parser.add_argument("--template", metavar="NAME",
                            help="the tenant's message template: subject and bodies rendered now")
        parser.add_argument("--context-file", metavar="F",
                            help="JSON object with the template's variables (- for stdin)")
        parser.add_argument("--send-after", metavar="DATETIME",
                            help="not before this moment (ISO 8601, e.g. 2026-12-24T08:00; without an offset "
                                 "in the server's time zone)")
        parser.add_argument("--json", action="store_true",
                            help="print the message's record as JSON (per recipient: reply code, text, queue id)")
        parser.add_argument("--html-file", metavar="F", help="file with an HTML body (UTF-8)")
        parser.add_argument("--attach", action="append", default=[], metavar="F",
                            help="attach a file; repeat for more")
        parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                            help="an extra header; repeat for more")
        parser.add_argument("--priority", type=int, default=0, help="higher is sent first")
        parser.add_argument("--now", action="store_true",
                            help="send from this process now and print each recipient's result")

    def handle(self, *args, **opts) -> None:
        try:
            connection = find_connection(tenant=opts["tenant"], name=opts["connection"], kind="outbound")
        except TenantMailError as exc:
            raise command_error(exc) from None
        held = ("disabled" if not connection.enabled
                else "of an inactive tenant" if not connection.tenant.active else "")
        if held and opts["now"]:
            # Nothing would be sent: say so before storing anything.
            raise CommandError(
                f"Not queued: connection '{connection.name}' is {held}, so --now cannot send. Enable it "
                f"(or the tenant), or leave out --now to queue the message until then."
            )
        to, cc, bcc = split_addresses(opts["to"]), split_addresses(opts["cc"]), split_addresses(opts["bcc"])
        if not (to or cc or bcc) and not (connection.default_to + connection.default_cc + connection.default_bcc).strip():
            raise usage_error("Give at least one recipient with --to, --cc or --bcc "
                              "(the connection has no default recipients).")
        if opts["body"] is None and opts["body_file"] is None and not opts["template"]:
            raise usage_error("Give the body with --body or --body-file, or a --template.")
        if opts["context_file"] and not opts["template"]:
            raise usage_error("--context-file gives the variables of a --template; name the template too.")
        context = _read_context(opts["context_file"]) if opts["context_file"] else {}
        send_after = _parse_moment(opts["send_after"]) if opts["send_after"] else None
        text = (opts["body"] if opts["body"] is not None
                else _read_text(opts["body_file"], "body") if opts["body_file"] else "")
        html = _read_text(opts["html_file"], "HTML") if opts["html_file"] else ""
        attachments = []
        for path in opts["attach"]:
            try:
                content = Path(path).read_bytes()
            except OSError as exc:
                raise usage_error(f"Cannot read the attachment {path}: {exc.strerror or exc}.") from None
            ctype = mimetypes.guess_type(path, strict=False)[0] or "application/octet-stream"
            attachments.append(AttachmentIn(Path(path).name, content, ctype))
        headers = {}
        for item in opts["header"]:
            name, sep, value = item.partition(":")
            if not sep:
                raise usage_error(f"--header {item!r} is not of the form Name:Value.")
            headers[name.strip()] = value.strip()

        try:
            message = enqueue(
                connection_id=connection.pk, to=to, cc=cc, bcc=bcc, subject=opts["subject"],
                text=text, html=html, from_address=opts["from_address"],
                reply_to=split_addresses(opts["reply_to"]) if opts["reply_to"] is not None else None,
                attachments=attachments, extra_headers=headers, priority=opts["priority"],
                dispatch=not opts["now"], send_after=send_after,
                template=opts["template"] or None, context=context,
            )
        except TenantMailError as exc:
            raise CommandError(f"Not queued: {exc}") from None

        if not opts["now"]:
            if opts["json"]:
                self.stdout.write(_as_json(message))
                return
            self.stdout.write(
                f"Queued message #{message.pk} {message.message_id} "
                f"({message.size} bytes, {len(message.envelope_to)} recipient(s)) "
                f"on {connection.tenant.slug}/{connection.name}; "
                + (f"the connection is {held}: it is sent once that changes." if held
                   else "the workers will send it.")
            )
            return

        message, report = send_now(message_id=message.pk)
        if message.status == OutboxStatus.SENDING:
            # A worker claimed it first (beat's dispatcher): wait for its outcome.
            deadline = time.monotonic() + 3 * connection.timeout + 10
            while message.status == OutboxStatus.SENDING and time.monotonic() < deadline:
                time.sleep(0.2)
                message.refresh_from_db(fields=["status", "recipient_results", "last_error", "next_attempt_at"])
        if opts["json"]:
            self.stdout.write(_as_json(message, error=report.error))
            if message.status != OutboxStatus.SENT or any(
                    r.get("status") != "accepted" for r in message.recipient_results.values()):
                raise SystemExit(1)
            return
        for address, result in message.recipient_results.items():
            if result.get("status") == "accepted":
                said = f" {result['code']} {result.get('text', '')}" if result.get("code") else ""
                self.stdout.write(f"  {address}: accepted{said}")
            else:
                self.stdout.write(f"  {address}: refused {result.get('code')} {result.get('text', '')}")
        if message.status == OutboxStatus.SENT:
            refused = sum(1 for r in message.recipient_results.values() if r.get("status") != "accepted")
            self.stdout.write(self.style.SUCCESS(
                f"Sent message #{message.pk} {message.message_id}"
                + (f" ({refused} recipient(s) refused)" if refused else "")
            ))
            if refused:
                raise SystemExit(1)
            return
        if message.status == OutboxStatus.QUEUED:
            when = message.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S %Z") if message.next_attempt_at else "later"
            raise CommandError(
                f"Not sent: {message.last_error or report.error}. Message #{message.pk} stays queued; "
                f"the workers will try again at {when}."
            )
        raise CommandError(f"Not sent: message #{message.pk} is {message.status}: {message.last_error or report.error}")
