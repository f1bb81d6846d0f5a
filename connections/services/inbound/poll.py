"""The lifecycle of one poll of an inbound connection: IMAP or POP3 mails into stored
messages, exactly once.

1. short transaction: a PollRun row (RUNNING) and the mailbox lock (host + user + folder);
2. network, no transaction open: the protocol's strategy (strategies/) lists what is new,
   fetches it in batches, stores and COMMITs each batch (rows + files), then post-processes it
   on the server (mark read / delete / move) and records post_processed_at;
3. short transaction: close the PollRun, release the lock, back off or reset, next run.

Exactly once: a mail is committed before the server is touched. If the worker dies in
between, the next poll finds rows with post_processed_at NULL and completes their
post-processing without storing them again (the unique (connection, server_key) constraint
makes a second insert impossible anyway).
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from connections.conf import conf
from ...errors import TenantMailError
from ...mail import MailSettings
from ...mail.imap import Goodbye
from ...mail.opener import HeadStart
from ...models import InboundConnection, PollOutcome, PollRun, Protocol, ScheduleKind, UserCredential
from ..monitoring import lag, metrics
from ..persistence import inbound as inbound_rows
from ..setup.connection_settings import mail_settings_for, open_credential, transport_settings_for
from . import faults, locks, schedule
from .result import PollAborted, PollResult
from .strategies import strategy_for

log = logging.getLogger(__name__)

MAX_BACKOFF_MINUTES = 60
LOCKED_RETRY_SECONDS = 30
# How long a poll waits for a refused connection to show before it takes the lock: free for a
# poll that connects (its TLS handshake takes longer than this wait and the lock together),
# and the thread that connects gets the interpreter meanwhile.
REFUSAL_WAIT = 0.002


def poll(*, connection_id: int, trigger: str = "schedule", parse: bool | None = None) -> PollResult:
    """Run one poll of the connection now. Never raises for mail or server trouble: the
    outcome and error are in the result and in the PollRun row."""
    if transaction.get_connection().in_atomic_block:
        # Exactly-once needs each batch committed before the server is touched, and no
        # transaction may stay open across network I/O.
        raise TenantMailError(
            "poll() must not run inside a database transaction.",
            hint="call it outside transaction.atomic() (tests: django_db(transaction=True)); "
                 "to poll after a commit use dispatch.request_poll()",
        )
    started = time.monotonic()
    started_at = timezone.now()
    # Whether earlier mails await post-processing comes with the same query: an empty poll
    # makes as few round trips as it can.
    start = inbound_rows.load_for_poll(connection_id=connection_id)
    connection = start.connection
    deferred_by_setting = parse is None and not conf.INBOUND_PARSE_DURING_POLL
    if parse is None:
        parse = not deferred_by_setting
    result = PollResult(connection_id=connection.pk, outcome=PollOutcome.RUNNING,
                        dispatch_lag_s=lag.dispatch_lag(connection=connection, started_at=started_at, trigger=trigger))
    run, key, token, goodbye = _run(connection, result, trigger=trigger, started_at=started_at, parse=parse,
                                    credential_row=start.credential)
    result.duration_ms = int((time.monotonic() - started) * 1000)
    result.poll_run_id = _finish(connection, run.pk if run else None, result, trigger=trigger,
                                 started_at=started_at, key=key if token is not None else None, token=token)
    if goodbye is not None:
        goodbye.result()  # the IMAP LOGOUT's answer, on its way while the outcome was written
    if deferred_by_setting and result.stored:
        from ...tasks import parse_stored_messages

        parse_stored_messages.delay(connection.pk)  # parsing off the poll's path
    if result.stored:
        _request_search_indexing()
    metrics.poll_finished(connection=connection, result=result)  # the log line
    return result


def _run(connection: InboundConnection, result: PollResult, *, trigger: str, started_at: datetime,
         parse: bool, credential_row: UserCredential | None) -> tuple[PollRun | None, str | None, str | None, Goodbye | None]:
    """Open the run, take the lock, run the protocol's strategy; the outcome goes into
    `result`. Returns (history row, lock key, lock token) for closing, and the session's
    goodbye if it is still under way."""
    key = token = goodbye = None
    run: PollRun | None = None
    head_start: HeadStart | None = None
    try:
        # The socket and TLS handshake wait on the server; the credential, the history row and
        # the lock wait on the database: both at once. Nothing is sent to the server before
        # the lock is ours (the session takes the socket over only then).
        transport = transport_settings_for(connection)
        head_start = HeadStart(transport)
        mail_settings, password = _credential_and_settings(connection, transport, credential_row)
        if (unreachable := head_start.failure(wait=REFUSAL_WAIT)) is not None:
            # The server refused already: no lock to take and no history row to open (it is
            # written whole at the end) — a failing poll costs one statement of bookkeeping.
            raise unreachable
        folder = connection.folder if connection.protocol == Protocol.IMAP else "INBOX"
        key = locks.mailbox_key(host=connection.host, username=mail_settings.username, folder=folder)
        opening = PollRun(tenant_id=connection.tenant_id, connection=connection, trigger=trigger[:16],
                          started_at=started_at, outcome=PollOutcome.RUNNING)
        # The history row (RUNNING) and the lock: one statement on PostgreSQL, else one
        # short transaction.
        token, took_over = inbound_rows.open_run_and_lock(
            run=opening, lock=locks.new_lock(key=key, timeout_seconds=connection.lock_timeout))
        run = opening
        if took_over:
            # The previous holder died: its RUNNING row (of this connection) is closed.
            PollRun.objects.filter(connection=connection, outcome=PollOutcome.RUNNING).exclude(pk=run.pk).update(
                outcome=PollOutcome.FAILED, finished_at=timezone.now(),
                error="The worker stopped during this poll (killed or crashed); the next poll completed its work.",
            )
        result.poll_run_id = run.pk
        if token is None:
            _skip_locked(result, key)
        else:
            lease = Lease(key, token, connection.lock_timeout)
            goodbye = strategy_for(connection)(connection=connection, mail_settings=mail_settings, password=password,
                                               result=result, parse=parse, lease=lease, head_start=head_start).run()
            result.outcome = PollOutcome.PARTIAL if result.failed else PollOutcome.SUCCESS
    except TenantMailError as exc:
        result.outcome = PollOutcome.FAILED
        result.error = str(exc)
    except faults.Interrupt:
        raise  # a simulated killed worker: leaves its lock and RUNNING row, like a real one
    except Exception as exc:  # a bug or an unexpected server reply: recorded, not lost
        log.exception("poll of inbound connection %s failed", connection.pk)
        result.outcome = PollOutcome.FAILED
        result.error = f"Unexpected error: {type(exc).__name__}: {exc}"
    finally:
        if head_start is not None:
            head_start.close()  # a socket the session did not take (locked, or a failure before)
    return run, key, token, goodbye


def _skip_locked(result: PollResult, key: str) -> None:
    held = locks.holder(key=key)
    result.outcome = PollOutcome.LOCKED
    result.error = "Another poll of this mailbox is running" + (
        f" (since {held.acquired_at:%H:%M:%S} UTC, lock expires {held.expires_at:%H:%M:%S} UTC)" if held else ""
    ) + "; skipped."


def _credential_and_settings(connection: InboundConnection, transport: MailSettings,
                             credential_row: UserCredential | None) -> tuple[MailSettings, str]:
    """(MailSettings, password) for the connection, through the connection-settings service."""
    credential = open_credential(connection, found=credential_row)
    settings = mail_settings_for(connection, credential=credential, transport=transport)
    return settings, (credential.password if credential is not None else "")


def _request_search_indexing() -> None:
    """Queue the body search indexing of what this poll stored (off the poll's path; beat
    sweeps every minute too). A broker that cannot be reached loses nothing: the rows wait."""
    from ...tasks import index_messages_for_search

    try:
        index_messages_for_search.delay()
    except Exception as exc:  # the poll itself succeeded; the sweep will index them
        log.warning("could not queue search indexing (%s); beat's sweep will do it", type(exc).__name__)


@dataclass
class Lease:
    """Keeps the mailbox lock alive between batches; aborts when it was lost."""

    key: str
    token: str
    timeout: int

    def __post_init__(self) -> None:
        self.last = time.monotonic()

    def renew(self) -> None:
        if time.monotonic() - self.last < min(30, self.timeout / 4):
            return
        if not locks.extend(key=self.key, token=self.token, timeout_seconds=self.timeout):
            raise PollAborted(
                "The mailbox lock was taken over by another poll (this poll ran longer than the lock timeout).",
                hint="raise the connection's lock timeout",
            )
        self.last = time.monotonic()


def _locked_retry(connection: InboundConnection, now: datetime, next_at: datetime | None) -> datetime | None:
    """When a poll skipped because its mailbox was locked runs again: soon, not a full
    interval later — two connections of one mailbox on aligned schedules would otherwise
    collide at every run and one of them starve. now + min(interval, 30 s) + up to 20 %
    jitter, so that skipped pollers do not come back in step."""
    if next_at is None:  # disabled, or no valid schedule
        return None
    if connection.schedule_kind == ScheduleKind.CRON:
        interval = (next_at - now).total_seconds()
    else:
        interval = connection.schedule_every
    delay = max(1.0, min(float(interval), LOCKED_RETRY_SECONDS))
    return now + timedelta(seconds=delay + random.uniform(0, delay / 5))


def _finish(connection: InboundConnection, run_id: int | None, result: PollResult, *, trigger: str,
            started_at: datetime, key: str | None, token: str | None) -> int:
    """Release the lock (when held), close the history row (or write it whole when the poll
    failed before opening it), update the connection's poll state — one statement on
    PostgreSQL, else one short transaction. Returns the row's id."""
    now = timezone.now()
    outcome = dict(
        finished_at=now, outcome=result.outcome, fetched=result.fetched, stored=result.stored,
        skipped=result.skipped, failed=result.failed, bytes=result.bytes, duration_ms=result.duration_ms,
        error=result.error[:10000], oversized=result.oversized, recovered=result.recovered,
    )
    new_run = None
    if run_id is None:
        new_run = PollRun(tenant_id=connection.tenant_id, connection_id=connection.pk, trigger=trigger[:16],
                          started_at=started_at, **outcome)
    return inbound_rows.finish_run(
        run_id=run_id, new_run=new_run, outcome=outcome, connection_id=connection.pk,
        connection_update=_poll_state(connection, result, now),
        release=(key, token) if key is not None and token is not None else None,
        counters=metrics.upsert_sql(metrics.poll_counters(result)),  # /metrics counters
    )


def _poll_state(connection: InboundConnection, result: PollResult, now: datetime) -> dict:
    """The connection's new poll state: last outcome, failures and back-off, next run."""
    next_at = None
    if connection.enabled:
        try:
            next_at = schedule.next_run(schedule=schedule.Schedule.of(connection), after=now)
        except Exception:
            next_at = None
    update: dict = {"last_poll_at": now}
    if result.outcome == PollOutcome.FAILED:
        failures = connection.consecutive_failures + 1
        backoff = now + timedelta(minutes=min(2 ** (failures - 1), MAX_BACKOFF_MINUTES))
        update.update(
            last_poll_ok=False, last_error=result.error[:10000], consecutive_failures=failures,
            backoff_until=backoff, next_poll_at=max(next_at, backoff) if next_at else None,
        )
    elif result.outcome == PollOutcome.LOCKED:
        # Not a poll of ours: change nothing else, but come back soon.
        update = {"next_poll_at": _locked_retry(connection, now, next_at)}
    else:
        update.update(
            last_poll_ok=True, last_error=result.error[:10000] if result.outcome == PollOutcome.PARTIAL else "",
            consecutive_failures=0, backoff_until=None, next_poll_at=next_at,
        )
    return update
