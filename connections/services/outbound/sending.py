"""Sending the outbox: a worker sends a connection's due messages (`send_due`).

It follows the rule "no transaction open across network I/O":
1. claim (claims.py): one short transaction takes up to `max_per_session` due messages;
2. talk: one SMTP session for them, their MIME loaded in chunks as it goes (claims.MimeLoader);
3. record: each message's outcome (outcomes.py) right after the server's reply, handed to the
   session's writer (writer.py), which commits it together with the next message's "DATA
   started" (one statement, an asynchronous commit on PostgreSQL) or at the session's end.
Each message records how far it got and a heartbeat renews the worker's lease: after a crash,
recovery.py returns the untried messages to the queue by itself and makes `uncertain` the (at
most one per session) message caught between DATA and the final reply. Up to
OUTBOX_PARALLEL_SESSIONS sessions run at once, each in its own thread (parallel.py).

`send_due` must not run inside a transaction: its threads use database connections of their
own, which could not see the caller's uncommitted rows, and a transaction would span the
network I/O. It raises SendingInTransaction then, whoever the caller is.
"""
from __future__ import annotations

import time
from typing import Sequence

from django.db import transaction
from django.utils import timezone

from ... import signals
from ...errors import TenantMailError
from ...models import OutboundConnection, OutboxMessage
from . import outcomes, parallel, policy, recovery
from .claims import Claimed, MimeLoader, claim
from .outcomes import SendReport
from .prepare import human_size
from .writer import NotOurs, Writer

__all__ = ["send_due", "send_now", "SendingInTransaction"]


class SendingInTransaction(TenantMailError):
    """send_due was called inside a transaction (see the module doc)."""


def send_due(
    *,
    connection_id: int,
    message_ids: Sequence[int] | None = None,
    time_budget: float | None = None,
) -> SendReport:
    """Send the connection's due messages: sessions of up to max_per_session messages each.

    Stops when nothing is due, the rate limit is spent, the time budget is over (the next beat
    tick continues), or the connection cannot be used. `message_ids` limits it to those (one
    session).
    """
    if transaction.get_connection().in_atomic_block:
        raise SendingInTransaction(
            "The outbox cannot send inside a transaction.",
            hint="call send_due (or send_now) outside transaction.atomic(); to send on commit use kick()",
        )
    report = SendReport(connection_id)
    budget_end = time.monotonic() + (time_budget if time_budget is not None else policy.time_budget())
    try:
        connection = OutboundConnection.objects.select_related("tenant").get(pk=connection_id)
    except OutboundConnection.DoesNotExist:
        report.error = f"no outbound connection #{connection_id}"
        return report
    if not connection.enabled or not connection.tenant.active:
        report.error = f"connection '{connection.name}' is disabled" if not connection.enabled else "tenant inactive"
        return report

    def run_sessions(part: SendReport) -> None:
        _run_sessions(part, connection=connection, message_ids=message_ids, budget_end=budget_end)

    parallel.run(report, parallel.sessions_for(only_some=message_ids is not None), run_sessions)
    signals.notify_outbox_finished(connection_id=connection_id, outcomes=report.outcomes)
    return report


def _run_sessions(report: SendReport, *, connection: OutboundConnection, message_ids: Sequence[int] | None,
                  budget_end: float) -> None:
    """Claim a batch and send it in one session, again, until nothing is due or time is up."""
    write = Writer()
    try:
        while time.monotonic() < budget_end:
            batch = claim(connection, max(1, connection.max_per_session), message_ids)
            if not batch:
                break
            report.sessions += 1
            if not _session(report, connection=connection, batch=batch, write=write) or message_ids is not None:
                break
    finally:
        write.close()


def _session(report: SendReport, *, connection: OutboundConnection, batch: list[Claimed], write: Writer) -> bool:
    """One SMTP session for a claimed batch; False when the connection cannot be used now."""
    from ...mail.errors import MailError

    pending = {item.id: item for item in batch}  # claimed, not yet recorded
    try:
        with recovery.Heartbeat(connection_id=connection.pk, claimed_at=batch[0].claimed_at):
            loader = MimeLoader(batch)  # its first chunk, before the session opens
            with _open_session(connection) as client:
                _remember_size(connection, client.max_size)
                recovery.mark_session(connection_id=connection.pk, claimed_at=batch[0].claimed_at)
                _send_batch(report, client=client, batch=batch, pending=pending, loader=loader, write=write)
                write.flush()  # the last outcomes, before QUIT
    except MailError as exc:
        _after_mail_error(report, exc, batch=batch, pending=pending, write=write)
        return False
    except TenantMailError as exc:  # credentials, configuration
        report.outcomes += outcomes.release(pending.values(), reason=str(exc), delay=policy.hold_seconds(),
                                            outcome="held", write=write)
        report.error = str(exc)
        return False
    except BaseException:
        # Anything else (a bug, a kill): release what was not tried, keep the rest as is.
        outcomes.release(pending.values(), reason="sending interrupted before this message was tried", delay=0,
                         outcome="released", write=write)
        raise
    return True


def _send_batch(report: SendReport, *, client, batch: list[Claimed], pending: dict[int, Claimed],
                loader: MimeLoader, write: Writer) -> None:
    """Each message of the batch in turn, its outcome recorded as soon as the server replied."""
    from ...mail.errors import ConnectError, SMTPReplyError

    for index, item in enumerate(batch):
        if item.mime is None:
            loader.fill(index)
        if client.max_size and item.size > client.max_size:
            exc = SMTPReplyError(
                f"message is {human_size(item.size)}, more than the {human_size(client.max_size)} "
                f"the server accepts (SIZE {client.max_size}); not sent",
                code=552, transient=False,
            )
            report.outcomes.append(outcomes.record_failure(item, exc, transient=False, write=write))
            del pending[item.id]
            continue
        try:
            result = client.send(sender=item.envelope_from, recipients=item.envelope_to, message=item.mime,
                                 before_data=lambda item=item: write.mark_data(item))
        except NotOurs as exc:  # the client closed the session: end it here
            del pending[item.id]
            report.outcomes += outcomes.release(pending.values(), reason=str(exc), delay=0, outcome="released",
                                                write=write)
            pending.clear()
            return
        except SMTPReplyError as exc:
            report.outcomes.append(outcomes.record_failure(item, exc, transient=exc.transient, write=write))
            del pending[item.id]
            if exc.code == 421:
                raise ConnectError(f"the server closed the session: {exc.message}") from None
            continue
        except ConnectError as exc:
            report.outcomes.append(outcomes.record_failure(item, exc, transient=True, write=write))
            del pending[item.id]
            raise
        item.mime = None  # free memory as we go
        report.outcomes.append(outcomes.record_sent(
            item, result.accepted, dict(result.refused), write=write,
            replies=result.replies, final=result.reply, queue_id=result.queue_id))
        del pending[item.id]


def _after_mail_error(report: SendReport, exc, *, batch: list[Claimed], pending: dict[int, Claimed],
                      write: Writer) -> None:
    """The session failed: the messages not yet tried go back to the queue (or are held)."""
    if not exc.transient:
        report.outcomes += outcomes.release(pending.values(), reason=str(exc), delay=policy.hold_seconds(),
                                            outcome="held", write=write)
    elif len(pending) == len(batch):
        # The server is unreachable or went away: not the fault of the messages not yet
        # tried, but each try counts when nothing got through at all.
        for item in pending.values():
            report.outcomes.append(outcomes.record_failure(item, exc, transient=True, write=write))
    else:
        report.outcomes += outcomes.release(pending.values(), reason=str(exc), delay=policy.retry_base(),
                                            outcome="released", write=write)
    report.error = str(exc)


def _open_session(connection: OutboundConnection):
    """An SMTPClient (not yet entered) for the connection, with its deployed credential."""
    from ...mail.smtp import SMTPClient
    from ..setup.connection_settings import mail_settings_for, open_credential
    from ..oauth2.connect import login

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


def send_now(*, message_id: int) -> tuple[OutboxMessage, SendReport]:
    """Send one queued message in this process (the CLI's --now); returns it as recorded."""
    from ..monitoring.metrics import sends_finished  # issue 16: counters and send state

    message = OutboxMessage.objects.only("connection_id").get(pk=message_id)
    report = send_due(connection_id=message.connection_id, message_ids=[message_id])
    sends_finished(report=report)
    return OutboxMessage.objects.defer("mime").get(pk=message_id), report
