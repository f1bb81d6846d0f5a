"""The outbox: enqueueing (every way in calls `enqueue`), sending by the workers, operator actions.

Enqueue checks everything first (addresses, header values, From, size against the server's
SIZE) and stores nothing when one check fails. The MIME message is built once, at enqueue:
what was checked is exactly what goes on the wire, and a retry sends the same bytes with the
same Message-ID (so a receiver can recognise a duplicate from the at-least-once window).

Sending (`send_due`) follows the rule "no transaction open across network I/O":
1. claim: one short transaction, `SELECT … FOR UPDATE SKIP LOCKED` of the due messages of one
   connection, set to `sending` with `claimed_at`;
2. talk: one SMTP session for up to `max_per_session` messages;
3. record: each message's outcome right after the server's reply, handed to the writer,
   which commits it together with the next message's "DATA started" (one statement, an
   asynchronous commit on PostgreSQL: outbound/writer.py) or at the session's end. The MIME
   bytes are loaded ahead by another thread.
Each message records how far it got and the worker renews a lease: after a crash,
`outbound/recovery.py` returns the untried messages to the queue by itself and makes
`uncertain` the (at most one per session) message caught between DATA and the final reply.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from connections.conf import conf
from .. import signals
from ..errors import ConfigurationError, TenantMailError, ValidationError
from ..models import OutboundConnection, OutboxAttachment, OutboxMessage, OutboxStatus, SendProgress
from . import mime
from .outbound import attributes, fastmime, parallel, recovery, templates
from .outbound.writer import _entry, _NotOurs, _update, _Writer  # noqa: F401 - _Writer: tests tune it
from .mime import AttachmentIn

log = logging.getLogger(__name__)

__all__ = [
    "AttachmentIn", "SendReport", "enqueue", "prepare", "store", "send_due", "send_now",
    "dispatch_due", "requeue", "cancel", "stale_cutoff", "send_test_mail",
    "known_size_limit", "kick",
]

# Bytes of MIME fetched per query while sending: bounds memory with big attachments.
_MIME_CHUNK_BYTES = 16 * 1024 * 1024


# --- settings (all optional; defaults documented in docs/outbound.md) ------------------------

def _max_attempts() -> int:
    return max(1, int(conf.OUTBOX_MAX_ATTEMPTS))


def _retry_base() -> float:
    return float(conf.OUTBOX_RETRY_BASE_SECONDS)


def _retry_max() -> float:
    return float(conf.OUTBOX_RETRY_MAX_SECONDS)


def _hold_seconds() -> float:
    """Wait after a connection-level problem (credentials, TLS, authentication)."""
    return float(conf.OUTBOX_HOLD_SECONDS)


def _stale_minutes() -> float:
    return float(conf.OUTBOX_STALE_AFTER_MINUTES)


def _time_budget() -> float:
    return float(conf.OUTBOX_SEND_TIME_BUDGET)


def stale_cutoff(now: datetime | None = None) -> datetime:
    """Messages in `sending` claimed before this are stale (their worker is presumed gone)."""
    return (now or timezone.now()) - timedelta(minutes=_stale_minutes())


def backoff_seconds(attempts: int) -> float:
    """Exponential: base, 2×base, 4×base … capped; `attempts` is the number already made."""
    return min(_retry_base() * (2 ** max(0, attempts - 1)), _retry_max())


# --- enqueue ---------------------------------------------------------------------------------

@dataclass
class PreparedMessage:
    """A checked message with its MIME bytes, not yet stored."""

    connection: OutboundConnection
    from_address: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: str
    subject: str
    text: str
    html: str
    extra_headers: dict[str, str]
    attachments: list[tuple[str, str, bytes]]  # (name, content type, bytes)
    priority: int
    send_after: datetime | None
    message_id: str
    envelope_from: str
    envelope_to: list[str]
    mime: bytes

    def __repr__(self) -> str:
        return f"PreparedMessage({self.message_id}, {len(self.mime)} bytes, to {len(self.envelope_to)})"


def prepare(
    *,
    connection_id: int,
    to: Sequence[str] = (),
    subject: str = "",
    text: str = "",
    html: str = "",
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: Sequence[str] | str | None = None,
    from_address: str | None = None,
    attachments: Iterable[AttachmentIn] = (),
    extra_headers: dict[str, str] | None = None,
    priority: int = 0,
    send_after: datetime | None = None,
    connection: OutboundConnection | None = None,
) -> PreparedMessage:
    """Check a message and build its MIME bytes; raises ValidationError, stores nothing.

    `connection`, when given (the same one as connection_id), saves loading it: enqueue_many.
    """
    if connection is None or connection.pk != connection_id:
        try:
            connection = OutboundConnection.objects.select_related("tenant").get(pk=connection_id)
        except OutboundConnection.DoesNotExist:
            raise ValidationError(f"No outbound connection #{connection_id}.") from None
    # The connection's receiver attributes: default To/Cc/Bcc and Subject.
    to, cc, bcc, subject = attributes.defaults(connection, to=to, cc=cc, bcc=bcc, subject=subject)

    sender_text = (from_address or "").strip() or connection.default_from.strip()
    if not sender_text:
        raise ValidationError(
            "The message has no From address and the connection has no default From.",
            hint=f"pass from_address, or set the default From of connection '{connection.name}'",
        )
    sender = mime.parse_address(sender_text, field="From")
    to_list = mime.parse_address_list(list(to) if not isinstance(to, str) else to, field="To")
    cc_list = mime.parse_address_list(list(cc) if not isinstance(cc, str) else cc, field="Cc")
    bcc_list = mime.parse_address_list(list(bcc) if not isinstance(bcc, str) else bcc, field="Bcc")
    if reply_to is None:
        reply_to = [connection.default_reply_to] if connection.default_reply_to.strip() else []
    reply_list = mime.parse_address_list(reply_to, field="Reply-To")
    if not (to_list or cc_list or bcc_list):
        raise ValidationError("The message has no recipient.", hint="give at least one To, Cc or Bcc address")
    subject = mime.check_header_value(subject or "", field="Subject")
    if not isinstance(text, str) or not isinstance(html, str):
        raise ValidationError("The text and HTML bodies must be text.")
    headers = mime.check_extra_headers(extra_headers)
    if not isinstance(priority, int) or not -32768 <= priority <= 32767:
        raise ValidationError(f"Priority {priority!r} is not a whole number between -32768 and 32767.")
    if send_after is not None:
        if not isinstance(send_after, datetime):
            raise ValidationError("send_after must be a date and time.")
        if timezone.is_naive(send_after):
            send_after = timezone.make_aware(send_after)
    att_list = list(attachments)
    checked_atts: list[tuple[str, str, bytes]] = []
    for index, att in enumerate(att_list, start=1):
        name, maintype, subtype = mime.check_attachment(att, index=index)
        checked_atts.append((name, f"{maintype}/{subtype}", bytes(att.content)))

    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("message-id", "").strip() or mime.new_message_id(sender)
    date = timezone.now()
    if "date" in lowered:
        from email.utils import parsedate_to_datetime

        date = parsedate_to_datetime(lowered["date"])
    body_options = attributes.body_options(connection)
    # The commonest message (ASCII text/plain) written directly; anything else by the email package.
    raw = fastmime.build_simple(
        from_address=sender, to=to_list, cc=cc_list, reply_to=reply_list, subject=subject, text=text, html=html,
        attachments=checked_atts, extra_headers=headers, message_id=message_id, date=date,
        automatic_body=body_options.automatic, overridable=mime.OVERRIDABLE_HEADERS,
    )
    if raw is None:
        msg = mime.build_message(
            from_address=sender, to=to_list, cc=cc_list, reply_to=reply_list, subject=subject,
            text=text, html=html,
            attachments=[AttachmentIn(n, c, t) for n, t, c in checked_atts],
            extra_headers=headers, message_id=message_id, date=date, body_options=body_options,
        )
        try:
            raw = mime.to_bytes(msg)
        except (ValueError, TypeError, UnicodeError) as exc:  # the email package's last word
            raise ValidationError(f"The message cannot be encoded: {exc}.") from None

    limit = known_size_limit(connection)
    if limit and len(raw) > limit:
        raise ValidationError(
            f"The message is {_human(len(raw))} with its attachments encoded; the server of "
            f"connection '{connection.name}' accepts at most {_human(limit)} (SIZE {limit}).",
            hint="send smaller or fewer attachments, e.g. a link to the file instead",
        )

    reply_text = ", ".join(mime.format_address(a) for a in reply_list)
    for label, value in (("From", mime.format_address(sender)), ("Reply-To", reply_text), ("Message-ID", message_id)):
        if len(value) > 998:
            raise ValidationError(f"{label} is longer than 998 characters.")

    # Envelope: every To, Cc and Bcc address once, in order (case-insensitive domain).
    envelope: list[str] = []
    seen: set[str] = set()
    for address in (*to_list, *cc_list, *bcc_list):
        key = f"{address.username}@{address.domain.lower()}"
        if key not in seen:
            seen.add(key)
            envelope.append(address.addr_spec)
    return PreparedMessage(
        connection=connection,
        from_address=mime.format_address(sender),
        to=[mime.format_address(a) for a in to_list],
        cc=[mime.format_address(a) for a in cc_list],
        bcc=[mime.format_address(a) for a in bcc_list],
        reply_to=reply_text,
        subject=subject, text=text, html=html, extra_headers=headers,
        attachments=checked_atts, priority=priority, send_after=send_after,
        message_id=message_id, envelope_from=sender.addr_spec, envelope_to=envelope, mime=raw,
    )


def known_size_limit(connection: OutboundConnection) -> int | None:
    """The server's SIZE: from the last SMTP session, else from the last connectivity test."""
    if connection.smtp_max_size:
        return connection.smtp_max_size
    report = connection.last_test_report or {}
    for step in report.get("steps") or []:
        if isinstance(step, dict) and step.get("name") == "capabilities" and step.get("ok"):
            size = ((step.get("detail") or {}).get("features") or {}).get("size")
            if isinstance(size, int) and size > 0:
                return size
    return None


def store(prepared: PreparedMessage, *, dispatch: bool = True) -> OutboxMessage:
    """Store a prepared message and its attachments in one transaction; kick a worker on commit."""
    now = timezone.now()
    conn = prepared.connection
    with transaction.atomic():
        message = message_row(prepared, now)
        message.save(force_insert=True)
        save_attachments(prepared, message)
        if dispatch and conn.enabled and message.next_attempt_at <= now:
            # send_outbox.delay_on_commit, plus an expiry and robustness: a broker outage
            # must not turn a stored message into an exception for the caller (beat's
            # dispatcher sends it anyway).
            transaction.on_commit(lambda: kick(connection_id=conn.pk), robust=True)
    return message


def message_row(prepared: PreparedMessage, now: datetime) -> OutboxMessage:
    """The unsaved outbox row of a prepared message (store and enqueue_many save it)."""
    conn = prepared.connection
    return OutboxMessage(
        tenant_id=conn.tenant_id, connection=conn,
        from_address=prepared.from_address, to=prepared.to, cc=prepared.cc, bcc=prepared.bcc,
        reply_to=prepared.reply_to, subject=prepared.subject,
        text_body=prepared.text, html_body=prepared.html, extra_headers=prepared.extra_headers,
        priority=prepared.priority, send_after=prepared.send_after,
        status=OutboxStatus.QUEUED,
        next_attempt_at=max(prepared.send_after, now) if prepared.send_after else now,
        message_id=prepared.message_id, envelope_from=prepared.envelope_from,
        envelope_to=prepared.envelope_to, mime=prepared.mime, size=len(prepared.mime),
    )


def save_attachments(prepared: PreparedMessage, message: OutboxMessage) -> None:
    for name, content_type, content in prepared.attachments:
        att = OutboxAttachment(
            tenant_id=message.tenant_id, message=message, name=name,
            content_type=content_type, size=len(content),
        )
        att.file.save(name, ContentFile(content), save=False)
        att.save()


def enqueue(
    *,
    connection_id: int,
    to: Sequence[str] = (),
    subject: str = "",
    text: str = "",
    html: str = "",
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: Sequence[str] | str | None = None,
    from_address: str | None = None,
    attachments: Iterable[AttachmentIn] = (),
    extra_headers: dict[str, str] | None = None,
    priority: int = 0,
    send_after: datetime | None = None,
    dispatch: bool = True,
    template: str | None = None,
    context: dict[str, Any] | None = None,
) -> OutboxMessage:
    """Check, build and store one message; a worker sends it once the transaction commits.

    `template` names one of the tenant's message templates, rendered now with `context`
    (outbound/templates.py); a subject or body given as well wins over the template's.

    `reply_to=None` uses the connection's default Reply-To; `from_address=None` its default
    From. `dispatch=False` leaves the message to the beat dispatcher (or to `send_now`).
    Raises connections.errors.ValidationError, with nothing stored, for bad input.
    """
    connection = None
    if template is not None:
        connection = OutboundConnection.objects.select_related("tenant").filter(pk=connection_id).first()
        if connection is None:
            raise ValidationError(f"No outbound connection #{connection_id}.")
        rendered = templates.apply(connection=connection, kwargs=dict(
            template=template, context=context, subject=subject, text=text, html=html))
        subject, text, html = rendered["subject"], rendered["text"], rendered["html"]
    prepared = prepare(
        connection_id=connection_id, to=to, subject=subject, text=text, html=html, cc=cc,
        bcc=bcc, reply_to=reply_to, from_address=from_address, attachments=attachments,
        extra_headers=extra_headers, priority=priority, send_after=send_after, connection=connection,
    )
    return store(prepared, dispatch=dispatch)


def kick(*, connection_id: int) -> None:
    """Ask a worker to send a connection's due messages; the beat dispatcher is the safety net."""
    from .. import tasks  # tasks import services, not the other way round at import time

    try:
        tasks.send_outbox.apply_async((connection_id,), expires=_task_expiry())
    except Exception as exc:  # broker down: the message is stored; beat will dispatch it
        log.warning("outbox: could not enqueue send_outbox(%s): %s", connection_id, exc)


def _task_expiry() -> float:
    # A send task that waited longer than this is dropped: the beat dispatcher has queued a
    # newer one by then, so a stopped worker does not face a pile of duplicates at restart.
    return max(60.0, 6 * float(conf.OUTBOX_DISPATCH_INTERVAL))


def send_test_mail(*, connection_id: int, to: str) -> OutboxMessage:
    connection = OutboundConnection.objects.select_related("tenant").get(pk=connection_id)
    now = timezone.now()
    return enqueue(
        connection_id=connection_id,
        to=[to],
        subject=f"TenantMail test message from {connection.name}",
        text=(
            f"This is a test message sent by TenantMail through the outbound connection "
            f"'{connection.name}' of tenant '{connection.tenant.name}' "
            f"({connection.host}:{connection.port or 'default port'}).\n\n"
            f"Queued at {now:%Y-%m-%d %H:%M:%S} UTC.\n"
        ),
        extra_headers={"X-TenantMail-Test": "yes"},
        priority=100,
    )


# --- dispatch (beat) -------------------------------------------------------------------------

def dispatch_due(*, now: datetime | None = None) -> list[int]:
    """Ids of the enabled connections with due queued messages and no sender at work now.

    One query (after recovering the messages of dead workers). A connection with a live lease
    has a worker on it; that worker goes on with the next batch itself.
    """
    now = now or timezone.now()
    recovery.recover_expired(now=now)  # the messages of dead workers first
    due = OutboxMessage.objects.filter(
        connection=OuterRef("pk"), status=OutboxStatus.QUEUED, next_attempt_at__lte=now
    )
    busy = OutboxMessage.objects.filter(
        connection=OuterRef("pk"), status=OutboxStatus.SENDING, lease_until__gt=now
    )
    return list(
        OutboundConnection.objects.filter(enabled=True, tenant__active=True)
        .filter(Exists(due), ~Exists(busy))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# --- sending ---------------------------------------------------------------------------------

@dataclass
class _Claimed:
    id: int
    envelope_from: str
    envelope_to: list[str]
    attempts: int
    delivery_log: list
    size: int
    previous_results: dict
    claimed_at: datetime
    mime: bytes | None = None
    resend_uncertain: bool = False


@dataclass
class MessageOutcome:
    message_id: int
    status: str  # sent | retry | failed | uncertain | held | released
    detail: str = ""
    recipients: dict[str, dict] = field(default_factory=dict)


@dataclass
class SendReport:
    connection_id: int
    sessions: int = 0
    outcomes: list[MessageOutcome] = field(default_factory=list)
    error: str = ""  # a connection-level problem (could not open a session)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def sent(self) -> int:
        return self.count("sent")

    @property
    def failed(self) -> int:
        return self.count("failed")

    def __str__(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("sent", "retry", "failed", "uncertain", "held", "released")
                 if self.count(s)]
        text = ", ".join(parts) or "nothing due"
        return f"{text} in {self.sessions} session(s)" + (f"; {self.error}" if self.error else "")


def _claim(connection: OutboundConnection, limit: int, only_ids: Sequence[int] | None) -> list[_Claimed]:
    """Short transaction: lock due messages (skipping those another worker holds), mark them sending."""
    now = timezone.now()
    with transaction.atomic():
        if connection.rate_limit_per_minute:
            # Serialise claims of this connection so that two workers cannot both spend the budget.
            OutboundConnection.objects.select_for_update().filter(pk=connection.pk).values_list("pk").first()
            used = OutboxMessage.objects.filter(
                connection_id=connection.pk, claimed_at__gt=now - timedelta(minutes=1)
            ).count()
            limit = min(limit, connection.rate_limit_per_minute - used)
            if limit <= 0:
                return []
        qs = OutboxMessage.objects.filter(
            connection_id=connection.pk, status=OutboxStatus.QUEUED, next_attempt_at__lte=now
        )
        if only_ids is not None:
            qs = qs.filter(pk__in=list(only_ids))
        rows = list(
            qs.select_for_update(skip_locked=True, of=("self",))
            .order_by("-priority", "next_attempt_at", "pk")
            .values_list("pk", "envelope_from", "envelope_to", "attempts", "delivery_log", "size",
                         "recipient_results")[:limit]
        )
        if not rows:
            return []
        OutboxMessage.objects.filter(pk__in=[r[0] for r in rows]).update(
            status=OutboxStatus.SENDING, claimed_at=now, lease_until=recovery.lease_until(now),
            progress=SendProgress.CLAIMED,
        )
    return [_Claimed(*row, claimed_at=now, resend_uncertain=connection.resend_uncertain) for row in rows]


class _MimeLoader:
    """The MIME bytes of a claimed batch, in chunks (at most _MIME_CHUNK_BYTES each: bounded
    memory with big attachments). The first chunk is small and the next ones grow.

    Threaded (outside a transaction): a thread with its own database connection loads the
    chunks one ahead — the first while the SMTP session is being opened, each next one while
    the previous is being sent — so the sender rarely waits for the database. Otherwise
    (inside the caller's transaction, whose rows another connection could not see) each
    chunk is loaded when it is needed.
    """

    FIRST = 8   # messages in the first chunk
    GROWTH = 4  # each next chunk holds up to this many times more

    def __init__(self, batch: list[_Claimed], *, threaded: bool) -> None:
        self.batch = batch
        self.threaded = threaded
        self.chunks = self._plan()
        self._next = 0
        if threaded:
            self._queue: queue.Queue = queue.Queue(maxsize=1)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="outbox-mime", daemon=True)
            self._thread.start()

    def _plan(self) -> list[tuple[int, int]]:
        chunks, start, want = [], 0, self.FIRST
        while start < len(self.batch):
            end, total = start, 0
            while end < len(self.batch) and (end == start or (
                    end - start < want and total + self.batch[end].size <= _MIME_CHUNK_BYTES)):
                total += self.batch[end].size
                end += 1
            chunks.append((start, end))
            start, want = end, want * self.GROWTH
        return chunks

    def _fetch(self, start: int, end: int) -> dict[int, Any]:
        ids = [item.id for item in self.batch[start:end]]
        return dict(OutboxMessage.objects.filter(pk__in=ids).values_list("pk", "mime"))

    def _run(self) -> None:
        from django.db import connection as db_connection

        try:
            for start, end in self.chunks:
                try:
                    loaded: Any = (start, end, self._fetch(start, end))
                except BaseException as exc:  # handed to the sender, who raises it
                    loaded = exc
                while not self._stop.is_set():
                    try:
                        self._queue.put(loaded, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set() or isinstance(loaded, BaseException):
                    return
        finally:
            db_connection.close()  # this thread's own database connection

    def fill(self, index: int) -> None:
        """Set .mime of the chunk that starts at batch[index] (the batch is sent in order)."""
        if self.threaded:
            loaded = self._queue.get()
            if isinstance(loaded, BaseException):
                raise loaded
            start, end, found = loaded
        else:
            start, end = self.chunks[self._next]
            found = self._fetch(start, end)
        self._next += 1
        if start != index:  # pragma: no cover - a bug, not a condition of the data
            raise RuntimeError(f"outbox: MIME chunk starts at {start}, needed at {index}")
        for item in self.batch[start:end]:
            item.mime = bytes(found.get(item.id) or b"")

    def __enter__(self) -> "_MimeLoader":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        if not self.threaded:
            return
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join()


def _record_sent(item: _Claimed, accepted: Sequence[str], refused: dict[str, tuple[int, str]],
                 write=_update, *, replies: dict[str, tuple[int, str]] | None = None,
                 final: tuple[int, str] = (0, ""), queue_id: str = "") -> MessageOutcome:
    results: dict[str, dict] = {}
    replies = replies or {}
    for rcpt in item.envelope_to:
        if rcpt in refused:
            code, text = refused[rcpt]
            results[rcpt] = {"status": "refused", "code": code, "text": _text(text)}
        else:
            # What the server said: to RCPT TO, and its final reply to the data (queue id).
            results[rcpt] = accepted_result(replies.get(rcpt), final, queue_id)
    for rcpt, (code, text) in refused.items():  # in case the server names them differently
        results.setdefault(rcpt, {"status": "refused", "code": code, "text": _text(text)})
    summary = f"accepted for {len(accepted)} of {len(results)} recipients"
    if refused:
        summary += "; refused: " + "; ".join(f"{r}: {v['code']} {v['text']}" for r, v in results.items()
                                             if v["status"] == "refused")
    followup = None
    deferred = [r for r, v in results.items() if v["status"] == "refused" and 400 <= v["code"] < 500]
    if deferred and item.attempts + 1 < _max_attempts():
        delay = backoff_seconds(item.attempts + 1)
        reason = "; ".join(f"{r}: {results[r]['code']} {results[r]['text']}" for r in deferred)
        followup = {"recipients": deferred, "delay": delay, "reason": reason}
        summary += f"; {len(deferred)} refused temporarily: tried again in a follow-up message"
    now = timezone.now()
    write(
        item, status=OutboxStatus.SENT, sent_at=now, attempts=item.attempts + 1,
        recipient_results={**(item.previous_results or {}), **results},
        last_error="" if not refused else summary, next_attempt_at=None,
        delivery_log=item.delivery_log + [_entry("sent" if not refused else "partial", summary, final[0] or None,
                                                 **({"queue_id": queue_id} if queue_id else {}))],
        followup=followup, progress=SendProgress.REPLIED,
    )
    return MessageOutcome(item.id, "sent", summary, results)


def _record_failure(item: _Claimed, exc: TenantMailError, *, transient: bool, write=_update) -> MessageOutcome:
    code = getattr(exc, "code", None)
    detail = str(exc)
    attempts = item.attempts + 1
    refused = getattr(exc, "refused", None) or {}
    results = {r: {"status": "refused", "code": c, "text": _text(t)} for r, (c, t) in refused.items()}
    if getattr(exc, "maybe_delivered", False):
        return _record_uncertain(item, exc, write=write)
    if transient and attempts < _max_attempts():
        delay = backoff_seconds(attempts)
        extra: dict[str, Any] = {}
        # Every recipient refused, some for good (5xx): the retry is only for the others.
        still = [r for r in item.envelope_to if r not in refused or 400 <= refused[r][0] < 500]
        if refused and still and len(still) < len(item.envelope_to):
            extra["envelope_to"] = still
        write(
            item, status=OutboxStatus.QUEUED, attempts=attempts, last_error=detail,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            recipient_results={**(item.previous_results or {}), **results}, progress=SendProgress.REPLIED,
            delivery_log=item.delivery_log + [_entry("retry", detail, code, retry_in=int(delay))], **extra,
        )
        return MessageOutcome(item.id, "retry", detail, results)
    if transient:
        detail = f"gave up after {attempts} attempts; last error: {detail}"
    write(
        item, status=OutboxStatus.FAILED, attempts=attempts, last_error=detail, next_attempt_at=None,
        recipient_results={**(item.previous_results or {}), **results}, progress=SendProgress.REPLIED,
        delivery_log=item.delivery_log + [_entry("failed", detail, code)],
    )
    return MessageOutcome(item.id, "failed", detail, results)


def accepted_result(rcpt_reply: tuple[int, str] | None, final: tuple[int, str], queue_id: str) -> dict:
    result: dict[str, Any] = {"status": "accepted"}
    if rcpt_reply:
        result["rcpt_code"], result["rcpt_text"] = rcpt_reply[0], _text(rcpt_reply[1])
    if final[0]:
        result["code"], result["text"] = final[0], _text(final[1])
    if queue_id:
        result["queue_id"] = queue_id
    return result


def _record_uncertain(item: _Claimed, exc: TenantMailError, *, write=_update) -> MessageOutcome:
    """Lost after the data, before the reply: uncertain, or queued again if the connection says so."""
    detail = str(exc)
    if item.resend_uncertain:
        write(item, status=OutboxStatus.QUEUED, attempts=item.attempts + 1, last_error=detail,
              next_attempt_at=timezone.now() + timedelta(seconds=_retry_base()), progress=SendProgress.REPLIED,
              delivery_log=item.delivery_log + [_entry("uncertain", detail + "; sent again (the connection "
                                                                            "resends uncertain messages)")])
        return MessageOutcome(item.id, "retry", detail)
    write(item, status=OutboxStatus.UNCERTAIN, attempts=item.attempts + 1, last_error=detail,
          next_attempt_at=None, progress=SendProgress.REPLIED,
          delivery_log=item.delivery_log + [_entry("uncertain", detail)])
    return MessageOutcome(item.id, "uncertain", detail)


def _release(items: Iterable[_Claimed], *, reason: str, delay: float, outcome: str,
             write=_update) -> list[MessageOutcome]:
    """Back to queued without counting an attempt (they were not tried, or the fault is not theirs)."""
    at = timezone.now() + timedelta(seconds=delay)
    outcomes = []
    for item in items:
        write(
            item, status=OutboxStatus.QUEUED, next_attempt_at=at, last_error=reason,
            delivery_log=item.delivery_log + [_entry(outcome, reason)] if outcome == "held" else item.delivery_log,
        )
        outcomes.append(MessageOutcome(item.id, outcome, reason))
    return outcomes


def _text(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:500]


def _open_session(connection: OutboundConnection):
    """An SMTPClient (not yet entered) for the connection, with its deployed credential."""
    from ..mail.smtp import SMTPClient
    from .setup.connection_settings import mail_settings_for, open_credential

    from .oauth2.connect import login

    credential = open_credential(connection)
    mail_settings = mail_settings_for(connection, credential=credential)
    return login(connection, SMTPClient, mail_settings, credential.password if credential else None)


def _remember_size(connection: OutboundConnection, max_size: int | None) -> None:
    size = max_size or None
    if size != connection.smtp_max_size:
        OutboundConnection.objects.filter(pk=connection.pk).update(
            smtp_max_size=size, smtp_max_size_seen_at=timezone.now()
        )
        connection.smtp_max_size = size


def send_due(
    *,
    connection_id: int,
    message_ids: Sequence[int] | None = None,
    time_budget: float | None = None,
) -> SendReport:
    """Send the connection's due messages: sessions of up to max_per_session messages each.

    Stops when nothing is due, the rate limit is spent, the time budget is over (the next beat
    tick continues), or the connection cannot be used. `message_ids` limits it to those.
    """
    from ..mail.errors import ConnectError, MailError, SMTPReplyError

    report = SendReport(connection_id)
    budget_end = time.monotonic() + (time_budget if time_budget is not None else _time_budget())
    try:
        connection = OutboundConnection.objects.select_related("tenant").get(pk=connection_id)
    except OutboundConnection.DoesNotExist:
        report.error = f"no outbound connection #{connection_id}"
        return report
    if not connection.enabled or not connection.tenant.active:
        report.error = f"connection '{connection.name}' is disabled" if not connection.enabled else "tenant inactive"
        return report

    threaded = not transaction.get_connection().in_atomic_block
    sessions = parallel.parallel_sessions(threaded=threaded, only_some=message_ids is not None)

    def run_sessions(report: SendReport) -> None:
        write = _Writer(threaded=threaded)
        try:
            while time.monotonic() < budget_end:
                batch = _claim(connection, max(1, connection.max_per_session), message_ids)
                if not batch:
                    break
                report.sessions += 1
                pending = {item.id: item for item in batch}  # claimed, not yet recorded
                try:
                    # The loader first: it fetches MIME while the session is being opened.
                    with recovery.Heartbeat(connection_id=connection.pk, claimed_at=batch[0].claimed_at,
                                            threaded=write.threaded), \
                            _MimeLoader(batch, threaded=write.threaded) as loader, _open_session(connection) as client:
                        _remember_size(connection, client.max_size)
                        recovery.mark_session(connection_id=connection.pk, claimed_at=batch[0].claimed_at)
                        for index, item in enumerate(batch):
                            if item.mime is None:
                                loader.fill(index)
                            if client.max_size and item.size > client.max_size:
                                exc = SMTPReplyError(
                                    f"message is {_human(item.size)}, more than the {_human(client.max_size)} "
                                    f"the server accepts (SIZE {client.max_size}); not sent",
                                    code=552, transient=False,
                                )
                                report.outcomes.append(_record_failure(item, exc, transient=False, write=write))
                                del pending[item.id]
                                continue
                            try:
                                result = client.send(sender=item.envelope_from, recipients=item.envelope_to,
                                                     message=item.mime,
                                                     before_data=lambda item=item: write.mark_data(item))
                            except _NotOurs as exc:  # the client closed the session: end it here
                                del pending[item.id]
                                report.outcomes += _release(pending.values(), reason=str(exc), delay=0,
                                                            outcome="released", write=write)
                                pending.clear()
                                break
                            except SMTPReplyError as exc:
                                report.outcomes.append(
                                    _record_failure(item, exc, transient=exc.transient, write=write))
                                del pending[item.id]
                                if exc.code == 421:
                                    raise ConnectError(f"the server closed the session: {exc.message}") from None
                                continue
                            except ConnectError as exc:
                                report.outcomes.append(_record_failure(item, exc, transient=True, write=write))
                                del pending[item.id]
                                raise
                            item.mime = None  # free memory as we go
                            report.outcomes.append(
                                _record_sent(item, result.accepted, dict(result.refused), write=write,
                                             replies=result.replies, final=result.reply, queue_id=result.queue_id))
                            del pending[item.id]
                        write.flush()  # the last outcomes, before QUIT
                except MailError as exc:
                    if exc.transient:
                        # The server is unreachable or went away: not the fault of the messages
                        # not yet tried, but each try counts when nothing got through at all.
                        if len(pending) == len(batch):
                            for item in pending.values():
                                report.outcomes.append(_record_failure(item, exc, transient=True, write=write))
                        else:
                            report.outcomes += _release(pending.values(), reason=str(exc), delay=_retry_base(),
                                                        outcome="released", write=write)
                        report.error = str(exc)
                    else:
                        report.outcomes += _release(pending.values(), reason=str(exc), delay=_hold_seconds(),
                                                    outcome="held", write=write)
                        report.error = str(exc)
                    break
                except TenantMailError as exc:  # credentials, configuration
                    report.outcomes += _release(pending.values(), reason=str(exc), delay=_hold_seconds(),
                                                outcome="held", write=write)
                    report.error = str(exc)
                    break
                except BaseException:
                    # Anything else (a bug, a kill): release what was not tried, keep the rest as is.
                    _release(pending.values(), reason="sending interrupted before this message was tried", delay=0,
                             outcome="released", write=write)
                    raise
                if message_ids is not None:
                    break
        finally:
            write.close()

    if sessions > 1:
        parallel.run_parallel(report, sessions, run_sessions)
    else:
        run_sessions(report)
    signals.notify_outbox_finished(connection_id=connection_id, outcomes=report.outcomes)
    return report


def _monitor(report: SendReport) -> None:
    from .monitoring.metrics import sends_finished  # issue 16: counters and send state

    sends_finished(report=report)


def send_now(*, message_id: int) -> tuple[OutboxMessage, SendReport]:
    """Send one queued message in this process (the CLI's --now); returns it as recorded."""
    message = OutboxMessage.objects.only("connection_id").get(pk=message_id)
    report = send_due(connection_id=message.connection_id, message_ids=[message_id])
    _monitor(report)
    return OutboxMessage.objects.defer("mime").get(pk=message_id), report


# --- operator actions ------------------------------------------------------------------------

@dataclass
class ActionResult:
    changed: int
    skipped: int

    def __str__(self) -> str:
        return f"{self.changed} changed, {self.skipped} skipped"


def _scoped(message_ids: Iterable[int], user) -> Any:
    qs = OutboxMessage.objects.filter(pk__in=list(message_ids))
    if user is not None:
        from .access import tenancy

        qs = tenancy.scope(qs, user, action="run")
    return qs


def requeue(*, message_ids: Iterable[int], user=None) -> ActionResult:
    """Failed, cancelled and stale `sending` messages back to queued, due now, attempts reset.

    (Beat's recovery handles stale `sending` messages by itself; this is the operator's
    shortcut. Uncertain messages have their own actions in outbound/recovery.py.)
    """
    now = timezone.now()
    ids = list(message_ids)
    who = getattr(user, "get_username", lambda: "")() if user is not None else ""
    changed, connections = 0, set()
    with transaction.atomic():
        eligible = (
            _scoped(ids, user)
            .filter(Q(status__in=[OutboxStatus.FAILED, OutboxStatus.CANCELLED]) | recovery.expired(now))
            .select_for_update(skip_locked=True)
            .only("pk", "status", "delivery_log", "connection_id")
        )
        for message in eligible:
            detail = f"requeued from {message.status}" + (f" by {who}" if who else "")
            OutboxMessage.objects.filter(pk=message.pk).update(
                status=OutboxStatus.QUEUED, attempts=0, next_attempt_at=now, claimed_at=None, lease_until=None,
                delivery_log=list(message.delivery_log) + [_entry("requeued", detail)],
            )
            changed += 1
            connections.add(message.connection_id)
        for cid in connections:
            transaction.on_commit(lambda cid=cid: kick(connection_id=cid), robust=True)
    return ActionResult(changed, len(ids) - changed)


def cancel(*, message_ids: Iterable[int], user=None) -> ActionResult:
    """Queued (and stale `sending`) messages to cancelled: they will not be sent (again)."""
    now = timezone.now()
    ids = list(message_ids)
    who = getattr(user, "get_username", lambda: "")() if user is not None else ""
    changed = 0
    with transaction.atomic():
        eligible = (
            _scoped(ids, user)
            .filter(Q(status__in=[OutboxStatus.QUEUED, OutboxStatus.UNCERTAIN]) | recovery.expired(now))
            .select_for_update(skip_locked=True)
            .only("pk", "status", "delivery_log")
        )
        for message in eligible:
            detail = f"cancelled from {message.status}" + (f" by {who}" if who else "")
            OutboxMessage.objects.filter(pk=message.pk).update(
                status=OutboxStatus.CANCELLED, next_attempt_at=None,
                delivery_log=list(message.delivery_log) + [_entry("cancelled", detail)],
            )
            changed += 1
    return ActionResult(changed, len(ids) - changed)


def counts_by_status(*, connection_id: int) -> dict[str, int]:
    rows = (OutboxMessage.objects.filter(connection_id=connection_id)
            .values("status").annotate(n=Count("pk")).values_list("status", "n"))
    return dict(rows)


def _human(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"
