"""Storing a batch of fetched mails: files in storage first, then one short transaction for
the rows of the whole batch.

The database uniqueness constraint on (connection, server_key) is the exactly-once guard:
files are written first (outside any transaction), then the rows are inserted. A mail that is
already stored (the constraint fires) is counted as skipped and its freshly written files
are removed again. After a change of UIDVALIDITY, a mail stored under the old numbering is
re-bound to its new identity (Message-ID + content hash) instead of being stored twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from ...models import InboundConnection, PostProcessing, StoredMessage
from ..parsing.results import ParsedMessage
from ..persistence import inbound as inbound_rows
from . import files
from .fetched import FetchedMail, parse_mail

log = logging.getLogger(__name__)


@dataclass
class StoreOutcome:
    mail: FetchedMail
    status: str  # stored | duplicate | rebound | failed
    pk: int | None = None  # the StoredMessage
    error: str = ""


@dataclass
class Prepared:
    mail: FetchedMail
    sha: str
    parsed: ParsedMessage | None
    raw_size: int = 0
    raw_name: str = ""
    attachment_names: list[str] = field(default_factory=list)
    error: str = ""


def no_server_action(connection: InboundConnection) -> bool:
    """Post-processing that needs nothing from the server (keep)."""
    return connection.post_processing == PostProcessing.KEEP


def store_batch(*, connection: InboundConnection, mails: list[FetchedMail], parse: bool = True,
                mark_post_processed: list[int] | None = None) -> list[StoreOutcome]:
    """Store a batch of fetched mails; one transaction for the rows. Never raises for one mail.

    `mark_post_processed`: ids of earlier mails whose post-processing on the server is done;
    their post_processed_at is set in the same transaction (one commit less per batch). Late
    marking is safe: a mail left unmarked by a dying worker is post-processed again by the
    next poll, which is idempotent (mark read again; a moved or deleted mail is gone)."""
    prepared, failed = _prepare(mails, parse)
    rebound: list[tuple[Prepared, StoredMessage]] = []
    if connection.imap_resync and prepared:
        prepared, rebound = _match_resynced(connection, prepared, uidvalidity=mails[0].uidvalidity)
    _write_files(prepared)
    good = [p for p in prepared if not p.error]
    if good and files.must_sync(connection):
        files.sync_files([name for p in good for name in (p.raw_name, *p.attachment_names)])
    now = timezone.now()
    marks = list(mark_post_processed or [])
    try:
        with transaction.atomic():
            inbound_rows.mark_post_processed(marks, now=now)
            marks = []
            results = _insert(connection, good, now)
            for prep, row in rebound:
                results.append(_rebind(connection, prep, row, now))
    except IntegrityError:
        # Another poll stored one of them (only possible without the lock, e.g. a lock
        # taken over too early): one by one, each in its own savepoint.
        results = _store_one_by_one(connection, good, rebound, now, marks)
    for prep in prepared:
        if prep.error:
            files.delete_files([prep.raw_name, *prep.attachment_names])
            results.append(StoreOutcome(prep.mail, "failed", error=prep.error))
    results.extend(failed)
    return results


def _prepare(mails: list[FetchedMail], parse: bool) -> tuple[list[Prepared], list[StoreOutcome]]:
    """Hash and parse what the fetching side did not do ahead; (prepared, failed)."""
    prepared: list[Prepared] = []
    failed: list[StoreOutcome] = []
    for mail in mails:
        try:
            sha = mail.sha or mail.sha256()
            parsed = mail.parsed if mail.parsed is not None else (parse_mail(mail) if parse else None)
            prepared.append(Prepared(mail=mail, sha=sha, parsed=parsed,
                                      raw_size=mail.stored_size,
                                      raw_name=mail.raw_name, attachment_names=list(mail.attachment_names),
                                      error=mail.write_error))
        except Exception as exc:  # e.g. the spool file vanished
            log.exception("could not prepare mail %s", mail.server_key)
            failed.append(StoreOutcome(mail, "failed", error=f"{mail.server_key}: {type(exc).__name__}: {exc}"))
    return prepared, failed


def _match_resynced(connection: InboundConnection, prepared: list[Prepared], *, uidvalidity: int | None
                    ) -> tuple[list[Prepared], list[tuple[Prepared, StoredMessage]]]:
    """UIDVALIDITY changed: (mails to store, (mail, row stored under the old numbering))."""
    old: dict[str, list[StoredMessage]] = {}
    for row in StoredMessage.objects.filter(
        connection=connection, raw_sha256__in=[p.sha for p in prepared]
    ).exclude(uidvalidity=uidvalidity).only("id", "raw_sha256", "message_id", "server_key"):
        old.setdefault(row.raw_sha256, []).append(row)
    remaining, rebound = [], []
    for prep in prepared:
        candidates = old.get(prep.sha) or []
        msgid = prep.parsed.message_id if prep.parsed else None
        match = next((r for r in candidates if msgid is None or r.message_id == msgid), None)
        if match is not None:
            candidates.remove(match)
            rebound.append((prep, match))
            files.delete_files([prep.raw_name, *prep.attachment_names])  # written ahead, not needed
        else:
            remaining.append(prep)
    return remaining, rebound


def _write_files(prepared: list[Prepared]) -> None:
    """Write the files of the mails not written ahead (an error is kept on the mail)."""
    for prep in prepared:
        if prep.raw_name or prep.error:
            continue  # written ahead (or failed there)
        try:
            prep.raw_name = files.save_raw(prep.mail)
            if prep.parsed is not None:
                for att in prep.parsed.attachments:
                    prep.attachment_names.append(files.save_attachment(att))
        except Exception as exc:
            log.exception("could not write files of mail %s", prep.mail.server_key)
            prep.error = f"{prep.mail.server_key}: cannot write to storage: {type(exc).__name__}: {exc}"
        finally:
            if prep.parsed is not None:
                prep.parsed.cleanup()


def _store_one_by_one(connection: InboundConnection, good: list[Prepared],
                      rebound: list[tuple[Prepared, StoredMessage]], now: datetime,
                      marks: list[int]) -> list[StoreOutcome]:
    results: list[StoreOutcome] = []
    if marks:
        inbound_rows.mark_post_processed(marks, now=now)
    for prep in good:
        try:
            with transaction.atomic():
                results.extend(_insert(connection, [prep], now))
        except IntegrityError:
            files.delete_files([prep.raw_name, *prep.attachment_names])
            results.append(StoreOutcome(prep.mail, "duplicate"))
    for prep, row in rebound:
        try:
            with transaction.atomic():
                results.append(_rebind(connection, prep, row, now))
        except IntegrityError:
            results.append(StoreOutcome(prep.mail, "duplicate"))
    return results


def _insert(connection: InboundConnection, preps: list[Prepared], now: datetime) -> list[StoreOutcome]:
    post_done = no_server_action(connection)
    ids = inbound_rows.insert_messages(
        messages=[message_values(connection, p, now, post_done=post_done) for p in preps],
        attachments=[attachment_values(connection, p) for p in preps],
    )
    return [StoreOutcome(prep.mail, "stored", pk) for prep, pk in zip(preps, ids)]


def _rebind(connection: InboundConnection, prep: Prepared, row: StoredMessage, now: datetime) -> StoreOutcome:
    StoredMessage.objects.filter(pk=row.pk).update(
        server_key=prep.mail.server_key, uidvalidity=prep.mail.uidvalidity, uid=prep.mail.uid,
        post_processed_at=now if no_server_action(connection) else None,
    )
    return StoreOutcome(prep.mail, "rebound", row.pk)


def message_values(connection: InboundConnection, prep: Prepared, now, *, post_done: bool) -> dict:
    """The StoredMessage columns of a prepared mail (attnames; no model instance: the
    PostgreSQL path sends them with COPY as they are)."""
    mail, parsed = prep.mail, prep.parsed
    values = dict(
        tenant_id=connection.tenant_id, connection_id=connection.pk, server_key=mail.server_key,
        uidvalidity=mail.uidvalidity, uid=mail.uid, uidl=mail.uidl, fetched_at=now,
        # The server's size for a header-only (oversized) mail, else the bytes stored.
        size=mail.size if mail.oversized else prep.raw_size,
        raw=prep.raw_name, raw_sha256=prep.sha, oversized=mail.oversized,
        post_processed_at=now if post_done else None,
    )
    if parsed is not None:
        values.update(parsed.header_fields())
        values.update(text_body=parsed.text_body, html_body=parsed.html_body, safe_html=parsed.safe_html,
                      has_attachments=bool(parsed.attachments), parse_problems=parsed.problems, parsed=True)
        if parsed.search_words is not None:  # in the search index from the start
            values.update(search_words=parsed.search_words, search_indexed=True)
    return values


def attachment_values(connection: InboundConnection, prep: Prepared) -> list[dict]:
    """The Attachment columns (without message_id) of a prepared mail's attachments."""
    if prep.parsed is None or not prep.attachment_names:
        return []
    return [
        dict(tenant_id=connection.tenant_id, filename=att.filename[:255],
             content_type=att.content_type[:255], size=att.size, sha256=att.sha256, inline=att.inline,
             content_id=att.content_id[:255], file=name)
        for att, name in zip(prep.parsed.attachments, prep.attachment_names)
    ]
