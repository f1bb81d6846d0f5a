"""The fetch → prepare → store pipeline of a poll: what is fetched in which batch, and the
threads (and forked helper processes) that fetch and prepare batches ahead of the one
being stored.

Three stages: one thread fetches (and parses) batches ahead, one hashes them and writes
their files (or hands them to the helper processes of prepare_pool.py), and the poll's own
thread inserts and commits the rows and post-processes. Creating files and inserting rows
wait on different things, so they overlap. A batch is only post-processed after its own rows
are committed (the strategy does that); batches prepared ahead of a poll that stops have
their files removed again.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from connections.conf import conf
from . import files, prepare_pool
from .fetched import FetchedMail, parse_mail

Plan = list[tuple[str, list[int]]]  # (kind: small | large | oversized, UIDs) in UID order


def batch_count() -> int:
    return int(conf.INBOUND_FETCH_BATCH)


def batch_bytes() -> int:
    return int(conf.INBOUND_FETCH_BATCH_BYTES)


def stream_threshold() -> int:
    """Mails larger than this are streamed to a spool file in chunks, never held whole."""
    return int(conf.INBOUND_STREAM_THRESHOLD)


def plan(uids: list[int], sizes: dict[int, int], max_size: int) -> Plan:
    """Work items in UID order: batches of small mails, single large or oversized ones."""
    most, most_bytes, threshold = batch_count(), batch_bytes(), stream_threshold()
    items: Plan = []
    batch: list[int] = []
    batch_size = 0
    for uid in uids:
        size = sizes.get(uid)
        if size is None:
            continue  # expunged meanwhile
        if size > max_size or size > threshold:
            if batch:
                items.append(("small", batch))
                batch, batch_size = [], 0
            items.append(("oversized" if size > max_size else "large", [uid]))
            continue
        batch.append(uid)
        batch_size += size
        if len(batch) >= most or batch_size >= most_bytes:
            items.append(("small", batch))
            batch, batch_size = [], 0
    if batch:
        items.append(("small", batch))
    return _taper(items)


TAPER_MIN = 100  # a final batch this big is split (below, the extra round trips cost more)


def _taper(items: Plan) -> Plan:
    """The poll's last batch split in halves, quarters, quarters: only after the last FETCH
    are its files written and its rows committed alone — a smaller last piece makes that
    tail shorter (the earlier pieces are written while the later ones are fetched)."""
    if not items or items[-1][0] != "small" or len(items[-1][1]) < TAPER_MIN:
        return items
    last = items.pop()[1]
    half, quarter = len(last) // 2, len(last) // 4
    items += [("small", last[:half]), ("small", last[half:half + quarter]), ("small", last[half + quarter:])]
    return items


class Prefetch:
    """The small batches of a plan, fetched and prepared ahead. `take(index)` returns the
    batch at `index` of the plan ready to store; `close()` stops the threads and helpers,
    `discard_unstored()` then removes the files of batches prepared but never taken.

    `fetch(uids)` fetches a batch from the server (the caller serialises it with its own
    use of the connection)."""

    DEPTH = 2  # batches in flight beyond the one being stored

    def __init__(self, *, plan: Plan, fetch: Callable[[list[int]], list[FetchedMail]], parse: bool) -> None:
        self.plan, self.fetch, self.parse = plan, fetch, parse
        # Started before this poll's threads exist (fork).
        self.helper = prepare_pool.start(plan) if parse else None
        self.fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imap-fetch")
        # With helper processes, two batches go to them at once (no idle helper between batches).
        self.writer = ThreadPoolExecutor(max_workers=2 if self.helper is not None else 1,
                                         thread_name_prefix="imap-store")
        self.queued: list[tuple[int, Future]] = []  # (plan index, prepared-batch future), in order

    def take(self, index: int) -> list[FetchedMail]:
        self._fill(index)
        _, ready = self.queued.pop(0)
        mails = ready.result()
        self._fill(index + 1)
        return mails

    def close(self) -> None:
        self.fetcher.shutdown(wait=True, cancel_futures=True)
        self.writer.shutdown(wait=True, cancel_futures=True)
        if self.helper is not None:
            self.helper.shutdown(wait=True, cancel_futures=True)

    def discard_unstored(self) -> None:
        for _, future in self.queued:  # the poll stopped before storing these batches
            if future.done() and not future.cancelled() and future.exception() is None:
                files.discard_unstored(future.result())

    def _fill(self, from_index: int) -> None:
        next_index = self.queued[-1][0] + 1 if self.queued else from_index
        while (len(self.queued) < self.DEPTH + 1 and next_index < len(self.plan)
               and self.plan[next_index][0] == "small"):
            fetched = self.fetcher.submit(self._fetch, self.plan[next_index][1])
            self.queued.append((next_index, self.writer.submit(self._prepare, fetched)))
            next_index += 1

    def _fetch(self, uids: list[int]) -> list[FetchedMail]:
        mails = self.fetch(uids)
        if self.parse and self.helper is None:  # CPU work here; the next stage mostly waits on the disk
            for mail in mails:
                mail.parsed = parse_mail(mail)
        return mails

    def _prepare(self, fetch_future: Future) -> list[FetchedMail]:
        mails = fetch_future.result()
        if self.helper is not None:
            return prepare_pool.prepare(self.helper, mails, self.parse)
        for mail in mails:
            mail.prepare_ahead(parse=self.parse, write=True)
        return mails
