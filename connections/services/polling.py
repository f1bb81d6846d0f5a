"""Polling an inbound connection: IMAP or POP3 mails into stored messages, exactly once.

One poll:
1. short transaction: a PollRun row; the mailbox lock (host + user + folder);
2. network, no transaction open: connect, log in, select, list what is new;
3. per batch: fetch -> store and COMMIT (rows + files) -> post-process on the server
   (mark read / delete / move) -> record post_processed_at;
4. short transaction: close the PollRun, back off or reset, compute the next run.

Exactly once: a mail is committed before the server is touched. If the worker dies in
between, the next poll finds rows with post_processed_at NULL and completes their
post-processing without storing them again (the unique (connection, server_key) constraint
makes a second insert impossible anyway).
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections.abc import Callable
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings as dj_settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, Value
from django.db.models.functions import Coalesce
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from ..errors import TenantMailError
from ..models import (
    InboundConnection, PollOutcome, PollRun, PostProcessing, Protocol, ScheduleKind, Selection, StoredMessage,
)
from .. import signals
from . import locks, schedule
from .monitoring import lag, metrics
from .oauth2.connect import login
from .storage import (
    FetchedMail, StoreOutcome, discard_unstored, new_spool_file, parse_mail, record_post_processed, store_batch,
)

log = logging.getLogger(__name__)

MAX_BACKOFF_MINUTES = 60


def _setting(name: str, default: int) -> int:
    return int(getattr(dj_settings, name, default))


def batch_count() -> int:
    return _setting("INBOUND_FETCH_BATCH", 200)


def batch_bytes() -> int:
    return _setting("INBOUND_FETCH_BATCH_BYTES", 16 * 1024 * 1024)


def stream_threshold() -> int:
    """Mails larger than this are streamed to a spool file in chunks, never held whole."""
    return _setting("INBOUND_STREAM_THRESHOLD", 4 * 1024 * 1024)


@dataclass
class PollResult:
    connection_id: int
    outcome: str
    poll_run_id: int | None = None
    fetched: int = 0
    stored: int = 0
    skipped: int = 0
    failed: int = 0
    oversized: int = 0
    recovered: int = 0
    bytes: int = 0
    duration_ms: int = 0
    error: str = ""
    stored_ids: list[int] = field(default_factory=list)
    dispatch_lag_s: float | None = None  # scheduled polls: due -> started (/metrics)

    @property
    def ok(self) -> bool:
        return self.outcome in (PollOutcome.SUCCESS, PollOutcome.LOCKED)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("stored_ids")
        return data

    def summary(self) -> str:
        text = (
            f"{self.outcome}: fetched {self.fetched}, stored {self.stored}, skipped {self.skipped}, "
            f"failed {self.failed}"
        )
        if self.oversized:
            text += f", oversized {self.oversized}"
        if self.recovered:
            text += f", post-processing completed for {self.recovered} earlier mail(s)"
        text += f"; {self.bytes} bytes in {self.duration_ms} ms"
        if self.error:
            text += f". {self.error}"
        return text


class PollAborted(TenantMailError):
    """The poll cannot go on (e.g. its mailbox lock was taken over)."""


class _Interrupt(BaseException):
    """Test hook: simulates a worker killed at a chosen point (not an Exception on purpose)."""


# --------------------------------------------------------------------------- credentials


def _credential_and_settings(connection: InboundConnection):
    """(MailSettings, password) for the connection, through the connection-settings service."""
    from .setup.connection_settings import mail_settings_for, open_credential

    credential = open_credential(connection)
    settings = mail_settings_for(connection, credential=credential)
    return settings, (credential.password if credential is not None else "")


# --------------------------------------------------------------------------- the poll


def poll(*, connection_id: int, trigger: str = "schedule", parse: bool | None = None,
         _hook: Callable[[str], None] | None = None) -> PollResult:
    """Run one poll of the connection now. Never raises for mail or server trouble: the
    outcome and error are in the result and in the PollRun row."""
    if transaction.get_connection().in_atomic_block:
        # Exactly-once needs each batch committed before the server is touched, and no
        # transaction may stay open across network I/O.
        raise TenantMailError(
            "poll() must not run inside a database transaction.",
            hint="call it outside transaction.atomic() (tests: django_db(transaction=True)); "
                 "to poll after a commit use request_poll()",
        )
    started = time.monotonic()
    started_at = timezone.now()
    # Whether earlier mails await post-processing comes with the same query (the index
    # message_pending_post_idx answers it): an empty poll makes as few round trips as it can.
    connection = (
        InboundConnection.objects.select_related("tenant")
        .annotate(has_pending=Exists(StoredMessage.objects.filter(connection=OuterRef("pk"),
                                                                  post_processed_at__isnull=True)))
        .get(pk=connection_id)
    )
    deferred_by_setting = parse is None and not getattr(dj_settings, "INBOUND_PARSE_DURING_POLL", True)
    if parse is None:
        parse = not deferred_by_setting
    result = PollResult(connection_id=connection.pk, outcome=PollOutcome.RUNNING,
                        dispatch_lag_s=lag.dispatch_lag(connection=connection, started_at=started_at, trigger=trigger))
    hook = _hook or (lambda point: None)
    key = token = None
    run: PollRun | None = None

    try:
        mail_settings, password = _credential_and_settings(connection)
        folder = connection.folder if connection.protocol == Protocol.IMAP else "INBOX"
        key = locks.mailbox_key(host=connection.host, username=mail_settings.username, folder=folder)
        # The history row (RUNNING) and the lock: one statement on PostgreSQL, else one
        # short transaction.
        run, token, took_over = _open_run_and_lock(connection, trigger, key, started_at)
        if took_over:
            # The previous holder died: its RUNNING row (of this connection) is closed.
            PollRun.objects.filter(connection=connection, outcome=PollOutcome.RUNNING).exclude(pk=run.pk).update(
                outcome=PollOutcome.FAILED, finished_at=timezone.now(),
                error="The worker stopped during this poll (killed or crashed); the next poll completed its work.",
            )
        result.poll_run_id = run.pk
        if token is None:
            held = locks.holder(key=key)
            result.outcome = PollOutcome.LOCKED
            result.error = "Another poll of this mailbox is running" + (
                f" (since {held.acquired_at:%H:%M:%S} UTC, lock expires {held.expires_at:%H:%M:%S} UTC)" if held else ""
            ) + "; skipped."
        else:
            lease = _Lease(key, token, connection.lock_timeout)
            if connection.protocol == Protocol.POP3:
                _poll_pop3(connection, mail_settings, password, result, parse, lease, hook)
            else:
                _poll_imap(connection, mail_settings, password, result, parse, lease, hook)
            result.outcome = PollOutcome.PARTIAL if result.failed else PollOutcome.SUCCESS
    except TenantMailError as exc:
        result.outcome = PollOutcome.FAILED
        result.error = str(exc)
    except _Interrupt:
        raise  # a simulated killed worker: leaves its lock and RUNNING row, like a real one
    except Exception as exc:  # a bug or an unexpected server reply: recorded, not lost
        log.exception("poll of inbound connection %s failed", connection.pk)
        result.outcome = PollOutcome.FAILED
        result.error = f"Unexpected error: {type(exc).__name__}: {exc}"
    result.duration_ms = int((time.monotonic() - started) * 1000)
    # Release the lock, close the history row, update the connection: one statement on
    # PostgreSQL (one round trip, one commit), else one short transaction.
    result.poll_run_id = _finish(connection, run.pk if run else None, result, trigger=trigger,
                                 started_at=started_at, key=key if token is not None else None, token=token)
    if deferred_by_setting and result.stored:
        from ..tasks import parse_stored_messages

        parse_stored_messages.delay(connection.pk)  # parsing off the poll's path
    if result.stored:
        _request_search_indexing()
    metrics.poll_finished(connection=connection, result=result)  # the log line
    return result


def _request_search_indexing() -> None:
    """Queue the body search indexing of what this poll stored (off the poll's path; beat
    sweeps every minute too). A broker that cannot be reached loses nothing: the rows wait."""
    from ..tasks import index_messages_for_search

    try:
        index_messages_for_search.delay()
    except Exception as exc:  # the poll itself succeeded; the sweep will index them
        log.warning("could not queue search indexing (%s); beat's sweep will do it", type(exc).__name__)


def _bookkeeping_commit() -> None:
    """PostgreSQL: do not wait for the WAL flush when committing poll bookkeeping (history
    row, lock, outcome). Losing it in a database crash is harmless — a lock then expires,
    a RUNNING row is closed by pruning, the dispatcher's claim re-polls — and any later
    stored-mail commit (always synchronous) flushes it anyway. Never used for mail rows."""
    conn = transaction.get_connection()
    # Only in our own outermost transaction: inside a caller's transaction SET LOCAL would
    # also cover the caller's (and the mail rows') commit.
    if conn.vendor == "postgresql" and len(getattr(conn, "atomic_blocks", [None, None])) == 1:
        with conn.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


# In autocommit, one statement is its own transaction: set_config(..., true) in it covers
# exactly that statement's commit (see _bookkeeping_commit for why that is safe).
_ASYNC_COMMIT = "SELECT set_config('synchronous_commit', 'off', true)"


def _one_statement() -> bool:
    """Bookkeeping as single statements (data-modifying CTEs): PostgreSQL in autocommit."""
    db = transaction.get_connection()
    return db.vendor == "postgresql" and not db.in_atomic_block


def _insert_sql(obj) -> tuple[str, list]:
    """INSERT … RETURNING id of an unsaved model instance (all concrete fields but the pk)."""
    db = transaction.get_connection()
    fields = [f for f in obj._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(db.ops.quote_name(f.column) for f in fields)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection=db) for f in fields]
    placeholders = ", ".join(["%s"] * len(fields))
    table = db.ops.quote_name(obj._meta.db_table)
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) RETURNING {db.ops.quote_name(obj._meta.pk.column)}", params


def _update_sql(model, pk: int, values: dict) -> tuple[str, list]:
    """UPDATE … WHERE pk = … as the ORM would write it (field preparation included)."""
    query = UpdateQuery(model)
    query.add_update_values(values)
    query.add_q(Q(pk=pk))
    return query.get_compiler(using=transaction.get_connection().alias).as_sql()


def _open_run_and_lock(connection: InboundConnection, trigger: str, key: str,
                       started_at: datetime) -> tuple[PollRun, str | None, bool]:
    """The RUNNING history row and the mailbox lock, committed together. Returns (row,
    lock token or None when another poll holds the mailbox, taken over from a dead holder)."""
    run = PollRun(tenant_id=connection.tenant_id, connection=connection, trigger=trigger[:16],
                  started_at=started_at, outcome=PollOutcome.RUNNING)
    if not _one_statement():
        with transaction.atomic():
            _bookkeeping_commit()
            run.save(force_insert=True)
            token, took_over = locks.acquire_or_take_over(key=key, timeout_seconds=connection.lock_timeout)
        return run, token, took_over
    # PostgreSQL: one round trip, one (asynchronous) commit instead of BEGIN, SET, two
    # INSERTs and COMMIT — most of an empty poll's bookkeeping cost.
    lock_sql, lock_params, token = locks.acquire_sql(key=key, timeout_seconds=connection.lock_timeout)
    run_sql, run_params = _insert_sql(run)
    sql = (f"WITH lk AS ({lock_sql}), run AS ({run_sql}) "
           f"SELECT (SELECT id FROM run), (SELECT fresh FROM lk), ({_ASYNC_COMMIT})")
    db = transaction.get_connection()
    with db.cursor() as cursor:
        cursor.execute(sql, [*lock_params, *run_params])
        run_id, fresh, _ = cursor.fetchone()
    run.pk = run_id
    run._state.adding = False
    run._state.db = db.alias
    if fresh is None:
        return run, None, False
    return run, token, not fresh


class _Lease:
    """Keeps the mailbox lock alive between batches; aborts when it was lost."""

    def __init__(self, key: str, token: str, timeout: int) -> None:
        self.key, self.token, self.timeout = key, token, timeout
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


LOCKED_RETRY_SECONDS = 30


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
    failed before opening it), update the connection's poll state. Returns the row's id."""
    now = timezone.now()
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
    outcome = dict(
        finished_at=now, outcome=result.outcome, fetched=result.fetched, stored=result.stored,
        skipped=result.skipped, failed=result.failed, bytes=result.bytes, duration_ms=result.duration_ms,
        error=result.error[:10000], oversized=result.oversized, recovered=result.recovered,
    )
    new_run = None
    if run_id is None:
        new_run = PollRun(tenant_id=connection.tenant_id, connection_id=connection.pk, trigger=trigger[:16],
                          started_at=started_at, **outcome)
    if not _one_statement():
        with transaction.atomic():
            _bookkeeping_commit()
            if key is not None and token is not None:
                locks.release(key=key, token=token)
            if new_run is not None:
                new_run.save(force_insert=True)
                run_id = new_run.pk
            else:
                PollRun.objects.filter(pk=run_id).update(**outcome)
            InboundConnection.objects.filter(pk=connection.pk).update(**update)
            with transaction.get_connection().cursor() as cursor:
                cursor.execute(*metrics.upsert_sql(metrics.poll_counters(result)))  # /metrics counters
        return run_id  # type: ignore[return-value]
    # PostgreSQL: the three writes in one statement (data-modifying CTEs share one
    # transaction), one round trip, an asynchronous commit.
    parts, params = [], []
    if key is not None and token is not None:
        release_sql, release_params = locks.release_sql(key=key, token=token)
        parts.append(f"rel AS ({release_sql})")
        params += release_params
    if new_run is not None:
        run_sql, run_params = _insert_sql(new_run)
    else:
        run_sql, run_params = _update_sql(PollRun, run_id, outcome)
        run_sql += " RETURNING " + transaction.get_connection().ops.quote_name(PollRun._meta.pk.column)
    parts.append(f"run AS ({run_sql})")
    params += run_params
    conn_sql, conn_params = _update_sql(InboundConnection, connection.pk, update)
    parts.append(f"conn AS ({conn_sql})")
    params += conn_params
    metrics_sql, metrics_params = metrics.upsert_sql(metrics.poll_counters(result))  # /metrics counters
    parts.append(f"metrics AS ({metrics_sql})")
    params += metrics_params
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT (SELECT id FROM run), ({_ASYNC_COMMIT})", params)
        return cursor.fetchone()[0]


def _record(result: PollResult, outcomes: list[StoreOutcome]) -> list[StoreOutcome]:
    """Count a stored batch; returns the outcomes whose mail is safely in the database."""
    signals.notify_stored(connection_id=result.connection_id, message_ids=[o.pk for o in outcomes if o.status == "stored"])
    done = []
    for outcome in outcomes:
        if outcome.status == "stored":
            result.stored += 1
            if outcome.pk:
                result.stored_ids.append(outcome.pk)
            if outcome.mail.oversized:
                result.oversized += 1
            done.append(outcome)
        elif outcome.status in ("duplicate", "rebound"):
            result.skipped += 1
            done.append(outcome)
        else:
            result.failed += 1
            _add_error(result, outcome.error)
        outcome.mail.cleanup()
    return done


def _add_error(result: PollResult, text: str) -> None:
    if not text:
        return
    lines = result.error.splitlines() if result.error else []
    if len(lines) < 20:
        lines.append(text)
    elif len(lines) == 20:
        lines.append("… more errors not shown")
    result.error = "\n".join(lines)


# --------------------------------------------------------------------------- IMAP


def _imap_post_process(client, connection: InboundConnection, uids: list[int]) -> None:
    if not uids:
        return
    mode = connection.post_processing
    if mode == PostProcessing.MARK_READ:
        client.mark_seen(uids)
    elif mode == PostProcessing.DELETE:
        client.delete(uids)
    elif mode in (PostProcessing.MOVE, PostProcessing.MOVE_AND_MARK_READ):
        if mode == PostProcessing.MOVE_AND_MARK_READ:
            client.mark_seen(uids)
        client.move(uids, connection.archive_folder)


def _post_process_safely(fn, result: PollResult, what: str) -> bool:
    try:
        fn()
        return True
    except TenantMailError as exc:
        from ..mail.errors import ProtocolError

        if isinstance(exc, ProtocolError) and not exc.transient:
            _add_error(result, f"Post-processing ({what}) failed: {exc}; it is retried on the next poll.")
            result.failed += 1
            return False
        raise


def _poll_imap(connection, mail_settings, password, result: PollResult, parse: bool, lease: _Lease, hook) -> None:
    from ..mail.imap import IMAPClient

    mode = connection.post_processing
    if mode in (PostProcessing.MOVE, PostProcessing.MOVE_AND_MARK_READ) and not connection.archive_folder.strip():
        raise TenantMailError(
            "Post-processing moves mails to an archive folder, but no archive folder is set.",
            hint="set the archive folder of the connection, or choose another post-processing",
        )
    with login(connection, IMAPClient, mail_settings, password) as client:
        info = client.select(connection.folder)
        uidvalidity = int(info.uidvalidity)
        if connection.imap_uidvalidity is not None and connection.imap_uidvalidity != uidvalidity:
            # The server renumbered the folder: every UID we know is void. Re-sync: new
            # mails are matched to stored ones by Message-ID + content hash.
            log.warning("inbound %s: UIDVALIDITY changed %s -> %s; re-syncing", connection.pk,
                        connection.imap_uidvalidity, uidvalidity)
            connection.imap_resync = True
            _add_error(result, f"The folder's UIDVALIDITY changed ({connection.imap_uidvalidity} -> {uidvalidity}); "
                               "mails are matched to stored ones by Message-ID and content instead of UID.")
        if connection.imap_uidvalidity != uidvalidity or connection.imap_resync:
            connection.imap_uidvalidity = uidvalidity
            InboundConnection.objects.filter(pk=connection.pk).update(
                imap_uidvalidity=uidvalidity, imap_resync=connection.imap_resync
            )
        if mode in (PostProcessing.MOVE, PostProcessing.MOVE_AND_MARK_READ):
            client.create_folder(connection.archive_folder)

        # 1. Mails stored by an earlier poll that died before post-processing them.
        pending = list(
            StoredMessage.objects.filter(
                connection=connection, post_processed_at__isnull=True, uidvalidity=uidvalidity
            ).values_list("pk", "uid")[:10000]
        ) if getattr(connection, "has_pending", True) else []
        if pending:
            # Only UIDs still in the folder (a person may have moved or deleted some meanwhile;
            # a MOVE of a vanished UID could fail on every poll otherwise).
            present = set(client.search_uids(unseen_only=False))
            gone = [pk for pk, uid in pending if uid not in present]
            record_post_processed(gone)
            pending = [(pk, uid) for pk, uid in pending if uid in present]
            result.recovered += len(gone)
            for start in range(0, len(pending), 500):
                chunk = pending[start:start + 500]
                if _post_process_safely(lambda: _imap_post_process(client, connection, [u for _, u in chunk]),
                                        result, "earlier mails"):
                    record_post_processed([pk for pk, _ in chunk])
                    result.recovered += len(chunk)

        # 2. What is new: with selection "all", only UIDs from the floor on (below it
        #    everything is stored), and no search at all when UIDNEXT says nothing arrived.
        unread = connection.selection == Selection.UNREAD
        scope = _uid_scope(mail_settings, connection.folder, uidvalidity)
        floor = None
        if not unread and not connection.imap_resync and connection.imap_uid_scope == scope:
            floor = connection.imap_uid_next
        if floor and info.uidnext and info.uidnext <= floor:
            uids = []
        else:
            uids = client.search_uids(unseen_only=unread, min_uid=floor)
        known: set[int] = set()
        for start in range(0, len(uids), 5000):
            chunk = uids[start:start + 5000]
            known.update(
                StoredMessage.objects.filter(connection=connection, uidvalidity=uidvalidity, uid__in=chunk)
                .values_list("uid", flat=True)
            )
        new = [u for u in uids if u not in known]
        result.skipped += len(uids) - len(new)
        more_waiting = len(new) > connection.max_messages
        # Where the next poll may start once this one has stored what it fetches.
        next_floor = None if unread else (
            new[connection.max_messages] if more_waiting else max([*uids, (info.uidnext or 1) - 1]) + 1
        )
        new = new[: connection.max_messages]
        if not new:
            if connection.imap_resync and not more_waiting:
                _end_resync(connection)
            _raise_uid_floor(connection, scope, next_floor)
            return
        sizes = client.fetch_sizes(new)

        # 3. Fetch in batches; store + commit; then post-process. A pipeline of three
        #    threads: one fetches (and parses) batches ahead, one hashes them and writes
        #    their files, and this one inserts and commits the rows and post-processes. The IMAP
        #    connection is used under a lock (one command at a time), and a batch is only
        #    post-processed after its own rows are committed.
        imap_lock = threading.Lock()
        # Mails post-processed on the server whose post_processed_at is not written yet: it
        # goes into the next batch's transaction (one commit less per batch), the rest at the end.
        to_mark: list[int] = []

        def flush(mails: list[FetchedMail]) -> None:
            outcomes = store_batch(connection=connection, mails=mails, parse=parse, mark_post_processed=to_mark)
            to_mark.clear()
            hook("stored")
            done = _record(result, outcomes)
            # An oversized mail is stored as headers only: deleting it on the server would
            # lose it, so Delete leaves it there (it is remembered by UID, never re-fetched).
            uids_done = [o.mail.uid for o in done if not (o.mail.oversized and mode == PostProcessing.DELETE)]
            pks_done = [o.pk for o in done if o.pk]
            if mode != PostProcessing.KEEP and uids_done:
                with imap_lock:
                    ok = _post_process_safely(lambda: _imap_post_process(client, connection, uids_done), result,
                                              "new mails")
                if ok:
                    to_mark.extend(pks_done)
            elif mode != PostProcessing.KEEP:  # nothing to do on the server
                to_mark.extend(pks_done)
            # KEEP: store_batch wrote the rows as post-processed already.
            lease.renew()

        def fetch_small(batch_uids: list[int]) -> list[FetchedMail]:
            with imap_lock:
                fetched = list(client.fetch_many(batch_uids))
            mails = [FetchedMail(server_key=f"imap:{uidvalidity}:{uid}", size=sizes.get(uid, len(data)), data=data,
                                 uidvalidity=uidvalidity, uid=uid) for uid, data in fetched]
            if parse and helper is None:  # CPU work here; the next stage mostly waits on the disk
                for mail in mails:
                    mail.parsed = parse_mail(mail)
            return mails

        def prepare(fetch_future: Future) -> list[FetchedMail]:
            mails = fetch_future.result()
            if helper is not None:
                return _prepare_in_helper(helper, mails, parse)
            for mail in mails:
                mail.prepare_ahead(parse=parse, write=True)
            return mails

        plan = _plan(new, sizes, connection.max_message_size)
        # Parsing + hashing + writing the files in a helper process (the second core): the
        # GIL would otherwise serialize them with fetching (TLS, imaplib) and the COPY.
        # Started before this poll's threads exist (fork).
        helper = _start_helper(plan) if parse else None
        fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap-fetch")
        # With helper processes, two batches go to them at once (no idle helper between batches).
        writer = ThreadPoolExecutor(max_workers=2 if helper is not None else 1, thread_name_prefix="imap-store")
        queued: list[tuple[int, Future]] = []  # (plan index, prepared-batch future), in order
        depth = 2  # batches in flight beyond the one being stored

        def fill(from_index: int) -> None:
            next_index = queued[-1][0] + 1 if queued else from_index
            while len(queued) < depth + 1 and next_index < len(plan) and plan[next_index][0] == "small":
                fetched = fetcher.submit(fetch_small, plan[next_index][1])
                queued.append((next_index, writer.submit(prepare, fetched)))
                next_index += 1

        try:
            for index, (kind, batch) in enumerate(plan):
                if kind == "small":
                    fill(index)
                    _, ready = queued.pop(0)
                    mails = ready.result()
                    fill(index + 1)
                    result.fetched += len(mails)
                    result.bytes += sum(m.stored_size for m in mails)
                    flush(mails)
                elif kind == "oversized":
                    uid = batch[0]
                    with imap_lock:
                        header = client.fetch_header(uid)
                    result.fetched += 1
                    result.bytes += len(header)
                    flush([FetchedMail(server_key=f"imap:{uidvalidity}:{uid}", size=sizes[uid], data=header,
                                       uidvalidity=uidvalidity, uid=uid, oversized=True)])
                else:  # large: streamed to a spool file in chunks
                    uid = batch[0]
                    fh, path = new_spool_file()
                    try:
                        with fh, imap_lock:
                            written = client.fetch_to(uid, fh, size=sizes[uid])
                    except BaseException:
                        os.unlink(path)
                        raise
                    result.fetched += 1
                    result.bytes += written
                    flush([FetchedMail(server_key=f"imap:{uidvalidity}:{uid}", size=sizes[uid], path=path,
                                       uidvalidity=uidvalidity, uid=uid)])
        finally:
            fetcher.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)
            if helper is not None:
                helper.shutdown(wait=True, cancel_futures=True)
            record_post_processed(to_mark)  # the last batch (also when the poll stops early)
            hook("post_processed")
            for _, future in queued:  # the poll stopped before storing these batches
                if future.done() and not future.cancelled() and future.exception() is None:
                    discard_unstored(future.result())
        if connection.imap_resync and not more_waiting and not result.failed:
            _end_resync(connection)
        if not result.failed and not connection.imap_resync:
            _raise_uid_floor(connection, scope, next_floor)


def _uid_scope(mail_settings, folder: str, uidvalidity: int) -> str:
    """Names the folder a UID floor belongs to: another server, user, folder or UIDVALIDITY
    makes the stored floor void."""
    where = f"{mail_settings.host}|{mail_settings.effective_port}|{mail_settings.username}|{folder}"
    return f"{uidvalidity}:{hashlib.sha256(where.encode()).hexdigest()[:40]}"


def _raise_uid_floor(connection: InboundConnection, scope: str, next_floor: int | None) -> None:
    """Remember that every UID below next_floor is stored (written only when it moves)."""
    if next_floor is None or (connection.imap_uid_scope == scope and connection.imap_uid_next == next_floor):
        return
    connection.imap_uid_next, connection.imap_uid_scope = next_floor, scope
    InboundConnection.objects.filter(pk=connection.pk).update(imap_uid_next=next_floor, imap_uid_scope=scope)


HELPER_CHUNK = 50  # mails per task sent to the helper process (pipelines the transfer)


def _start_helper(plan: list[tuple[str, list[int]]]):
    """A pool of INBOUND_PREPARE_PROCESSES forked processes that prepare batches of small
    mails, or None: when the poll is small, the machine has one core,
    INBOUND_PREPARE_PROCESSES is 0, or fork is unavailable. Never raises: the poll then prepares the mails in its own threads."""
    workers = _setting("INBOUND_PREPARE_PROCESSES", 2)
    small = sum(len(batch) for kind, batch in plan if kind == "small")
    if workers < 1 or (os.cpu_count() or 1) < 2 or small < _setting("INBOUND_PREPARE_PROCESS_MIN", 400):
        return None
    try:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_helper_init, initargs=(os.getpid(),))
        pool.submit(int).result(timeout=10)  # forks now, while this poll has no threads
        return pool
    except Exception:
        log.warning("no helper process for preparing mails; preparing them in the poll", exc_info=True)
        return None


def _helper_init(parent_pid: int) -> None:
    """In a new helper process: let go of the inherited database sockets (the fd points to
    /dev/null instead: the parent's connection is untouched, and a killed parent's backend
    sees its client go away), and exit when the parent dies (a SIGKILLed worker must not
    leave helpers behind)."""
    from django.db import connections

    devnull = os.open(os.devnull, os.O_RDWR)
    for conn in connections.all(initialized_only=True):
        try:
            if conn.connection is not None:
                os.dup2(devnull, conn.connection.fileno())
        except Exception:
            pass
    os.close(devnull)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _prepare_chunk(mails: list[FetchedMail], parse: bool) -> list[FetchedMail]:
    """In the helper process: hash, parse and write the files of each mail (no database).
    Sends back what the rows need — not the raw bytes, not the attachment payloads."""
    for mail in mails:
        mail.prepare_ahead(parse=parse, write=True)
        if mail.data is not None and not mail.write_error:
            mail._moved_size = len(mail.data)
            mail.data = None
        if mail.parsed is not None:
            for att in mail.parsed.attachments:
                att.payload = None
    return mails


def _prepare_in_helper(pool, mails: list[FetchedMail], parse: bool) -> list[FetchedMail]:
    chunks = [mails[i:i + HELPER_CHUNK] for i in range(0, len(mails), HELPER_CHUNK)]
    futures = []
    for chunk in chunks:
        try:
            futures.append(pool.submit(_prepare_chunk, chunk, parse))
        except Exception as exc:  # the pool broke earlier: this chunk is prepared here
            failed: Future = Future()
            failed.set_exception(exc)
            futures.append(failed)
    out: list[FetchedMail] = []
    for chunk, future in zip(chunks, futures):
        try:
            out.extend(future.result())
        except Exception:  # the helper died: prepare here (files it wrote are orphans)
            log.warning("helper process failed; preparing %d mails in the poll", len(chunk), exc_info=True)
            for mail in chunk:
                mail.prepare_ahead(parse=parse, write=True)
            out.extend(chunk)
    return out


def _plan(uids: list[int], sizes: dict[int, int], max_size: int) -> list[tuple[str, list[int]]]:
    """Work items in UID order: batches of small mails, single large or oversized ones."""
    plan: list[tuple[str, list[int]]] = []
    batch: list[int] = []
    batch_size = 0
    for uid in uids:
        size = sizes.get(uid)
        if size is None:
            continue  # expunged meanwhile
        if size > max_size or size > stream_threshold():
            if batch:
                plan.append(("small", batch))
                batch, batch_size = [], 0
            plan.append(("oversized" if size > max_size else "large", [uid]))
            continue
        batch.append(uid)
        batch_size += size
        if len(batch) >= batch_count() or batch_size >= batch_bytes():
            plan.append(("small", batch))
            batch, batch_size = [], 0
    if batch:
        plan.append(("small", batch))
    return plan


def _end_resync(connection: InboundConnection) -> None:
    connection.imap_resync = False
    InboundConnection.objects.filter(pk=connection.pk).update(imap_resync=False)


# --------------------------------------------------------------------------- POP3


def _poll_pop3(connection, mail_settings, password, result: PollResult, parse: bool, lease: _Lease, hook) -> None:
    from ..mail.pop3 import POP3Client

    delete = connection.post_processing == PostProcessing.DELETE
    to_mark: list[int] = []  # StoredMessage pks whose DELE takes effect at QUIT
    with login(connection, POP3Client, mail_settings, password) as client:
        listing = client.uidl()  # msgnum -> uidl
        by_uidl = {uidl: num for num, uidl in listing.items()}
        known: dict[str, tuple[int, bool]] = {}
        uidls = list(by_uidl)
        for start in range(0, len(uidls), 5000):
            chunk = uidls[start:start + 5000]
            for pk, uidl, done in StoredMessage.objects.filter(connection=connection, uidl__in=chunk).values_list(
                "pk", "uidl", "post_processed_at"
            ):
                known[uidl] = (pk, done is not None)
        # 1. Stored earlier, not yet deleted (the worker died before QUIT).
        if delete:
            for uidl, (pk, done) in known.items():
                if not done:
                    client.dele(by_uidl[uidl])
                    to_mark.append(pk)
                    result.recovered += 1
        # Pending rows whose mail is no longer on the server: nothing left to do.
        gone = StoredMessage.objects.filter(connection=connection, post_processed_at__isnull=True).exclude(
            uidl__in=uidls
        ).values_list("pk", flat=True)[:10000]
        record_post_processed(list(gone))

        new = [(num, uidl) for num, uidl in sorted(listing.items()) if uidl not in known]
        result.skipped += len(listing) - len(new)
        new = new[: connection.max_messages]
        sizes = client.list_sizes() if new else {}

        batch: list[FetchedMail] = []
        batch_size = 0

        def flush() -> None:
            nonlocal batch, batch_size
            outcomes = store_batch(connection=connection, mails=batch, parse=parse)
            hook("stored")
            done = _record(result, outcomes)
            if delete:
                for outcome in done:
                    if not outcome.mail.oversized:  # headers only: deleting would lose it
                        client.dele(outcome.mail.msgnum)
                    if outcome.pk:
                        to_mark.append(outcome.pk)
            else:
                record_post_processed([o.pk for o in done if o.pk])
            batch, batch_size = [], 0
            lease.renew()

        for num, uidl in new:
            size = sizes.get(num, 0)
            key = f"pop3:{uidl}"
            if size > connection.max_message_size:
                data = client.top(num, 0)
                result.fetched += 1
                result.bytes += len(data)
                batch.append(FetchedMail(server_key=key, size=size, data=data, uidl=uidl, msgnum=num, oversized=True))
            elif size > stream_threshold():
                fh, path = new_spool_file()
                try:
                    with fh:
                        written = client.retr_to(num, fh)
                except BaseException:
                    os.unlink(path)
                    raise
                result.fetched += 1
                result.bytes += written
                batch.append(FetchedMail(server_key=key, size=size, path=path, uidl=uidl, msgnum=num))
            else:
                import io

                buf = io.BytesIO()
                client.retr_to(num, buf)
                data = buf.getvalue()
                result.fetched += 1
                result.bytes += len(data)
                batch.append(FetchedMail(server_key=key, size=size or len(data), data=data, uidl=uidl, msgnum=num))
            batch_size += size
            if len(batch) >= batch_count() or batch_size >= batch_bytes():
                flush()
        if batch:
            flush()
        hook("before_quit")
    # QUIT succeeded: the deletions are done on the server.
    record_post_processed(to_mark)
    hook("post_processed")


# --------------------------------------------------------------------------- dispatch & housekeeping


@dataclass
class DispatchResult:
    dispatched: int
    connection_ids: list[int]


def due_connections(*, now: datetime | None = None):
    now = now or timezone.now()
    return InboundConnection.objects.filter(enabled=True).filter(
        Q(next_poll_at__lte=now) | Q(next_poll_at__isnull=True)
    ).filter(Q(backoff_until__isnull=True) | Q(backoff_until__lte=now))


def claim_due(*, now: datetime | None = None, limit: int | None = None) -> list[int]:
    """Claim the due connections in one short transaction: one SELECT (skipping rows another
    dispatcher holds) and one UPDATE that pushes their next_poll_at out by the claim horizon,
    so that a slow queue never gets the same poll twice. The poll sets the real next run."""
    now = now or timezone.now()
    horizon = now + timedelta(seconds=_setting("POLL_DISPATCH_CLAIM_SECONDS", 1800))
    limit = limit or _setting("POLL_DISPATCH_MAX", 50000)
    with transaction.atomic():
        ids = list(
            due_connections(now=now).order_by().select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit]
        )
        if ids:  # the due time is kept for the dispatch lag metric (same statement)
            InboundConnection.objects.filter(pk__in=ids).update(
                next_poll_at=horizon, dispatched_due_at=Coalesce(F("next_poll_at"), Value(now)))
    return ids


def prune_history(*, days: int | None = None) -> int:
    days = days if days is not None else _setting("POLL_HISTORY_RETENTION_DAYS", 30)
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = PollRun.objects.filter(started_at__lt=cutoff).exclude(outcome=PollOutcome.RUNNING).delete()
    # A RUNNING row this old belongs to a worker that died: close it.
    PollRun.objects.filter(started_at__lt=cutoff, outcome=PollOutcome.RUNNING).update(
        outcome=PollOutcome.FAILED, finished_at=timezone.now(), error="The worker stopped during this poll."
    )
    return deleted


def parse_pending(*, connection_id: int, limit: int = 500) -> int:
    """Parse mails stored raw (INBOUND_PARSE_DURING_POLL off, or a worker that died)."""
    from .storage import parse_stored

    n = 0
    for pk in StoredMessage.objects.filter(connection_id=connection_id, parsed=False).values_list("pk", flat=True)[:limit]:
        if parse_stored(message_id=pk):
            n += 1
    return n


# --------------------------------------------------------------------------- admin helpers

POP3_MODES = (PostProcessing.DELETE, PostProcessing.KEEP)


def validation_errors(connection: InboundConnection) -> dict[str, str]:
    """Field -> message for settings that cannot work (shown on the admin form)."""
    errors: dict[str, str] = {}
    if connection.protocol == Protocol.POP3 and connection.post_processing not in POP3_MODES:
        errors["post_processing"] = "POP3 can only delete mails or keep them on the server (remembered by UIDL)."
    if connection.protocol == Protocol.IMAP:
        if not (connection.folder or "").strip():
            errors["folder"] = "Name the IMAP folder to poll (usually INBOX)."
        if connection.post_processing in (PostProcessing.MOVE, PostProcessing.MOVE_AND_MARK_READ):
            archive = (connection.archive_folder or "").strip()
            if not archive:
                errors["archive_folder"] = "Moving needs an archive folder (it is created if missing)."
            elif archive == (connection.folder or "").strip():
                errors["archive_folder"] = "The archive folder must differ from the polled folder."
    if connection.max_messages < 1:
        errors["max_messages"] = "Fetch at least one message per poll."
    if connection.lock_timeout < 60:
        errors["lock_timeout"] = "Use at least 60 seconds: a poll that outlives its lock could run twice."
    try:
        schedule.validate(schedule=schedule.Schedule.of(connection))
    except TenantMailError as exc:
        field_name = "schedule_cron" if connection.schedule_kind == "cron" else "schedule_kind"
        if "time zone" in exc.message:
            field_name = "timezone"
        elif "interval" in exc.message:
            field_name = "schedule_every"
        elif "hours" in exc.message:
            field_name = "schedule_start_hour"
        elif "weekday" in exc.message.lower():
            field_name = "schedule_weekdays"
        errors[field_name] = str(exc)
    return errors


def request_poll(*, connection_id: int, trigger: str = "manual") -> None:
    """Queue a poll of the connection now (sent when the current transaction commits)."""
    from ..tasks import poll_connection

    poll_connection.delay_on_commit(connection_id, trigger)


def recent_runs(*, connection_id: int, limit: int = 10) -> list[PollRun]:
    return list(PollRun.objects.filter(connection_id=connection_id).order_by("-started_at")[:limit])
