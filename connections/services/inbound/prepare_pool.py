"""Forked helper processes that prepare batches of small mails (hash, parse, write their
files — no database) on the other cores: in the poll's own process the GIL would serialise
that work with fetching (TLS, imaplib) and the COPY.

Used by pipeline.py for large polls only; any failure falls back to preparing in the poll.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future

from connections.conf import conf
from .fetched import FetchedMail

log = logging.getLogger(__name__)


HELPER_CHUNK = 50  # mails per task sent to the helper process (pipelines the transfer)


def start(plan: list[tuple[str, list[int]]]):
    """A pool of INBOUND_PREPARE_PROCESSES forked processes that prepare batches of small
    mails, or None: when the poll is small, the machine has one core,
    INBOUND_PREPARE_PROCESSES is 0, or fork is unavailable. Never raises: the poll then prepares the mails in its own threads."""
    workers = int(conf.INBOUND_PREPARE_PROCESSES)
    small = sum(len(batch) for kind, batch in plan if kind == "small")
    if workers < 1 or (os.cpu_count() or 1) < 2 or small < int(conf.INBOUND_PREPARE_PROCESS_MIN):
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


def prepare(pool, mails: list[FetchedMail], parse: bool) -> list[FetchedMail]:
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
