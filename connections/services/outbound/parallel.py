"""Parallel SMTP sessions per connection (issue 21, item 5).

`send_due` runs up to `OUTBOX_PARALLEL_SESSIONS` (default 2) sessions of one connection at
once, each in a thread of its own with its own database connection: each session claims its
own batch (one session's worth, up to the connection's *max messages per session*, within
its rate limit — claims of a rate-limited connection are serialised in the database, see
claims.claim), sends it, records its outcomes with its own writer and claims the next,
until nothing is due or the time budget is spent. Everything the single session guarantees
holds per session: no transaction open across network I/O, at most one message per session
between "DATA started" and its outcome (so a killed worker leaves at most one *uncertain*
message per session it had open).

One session for `message_ids` (send these now), and on SQLite (one writer at a time).
"""
from __future__ import annotations

import threading
from typing import Callable

from django.db import connections, transaction

from . import policy
from .outcomes import SendReport


def sessions_for(*, only_some: bool) -> int:
    """How many sessions of one connection `send_due` runs at once."""
    if only_some or transaction.get_connection().vendor != "postgresql":
        return 1
    return policy.parallel_sessions()


def run(report: SendReport, sessions: int, run_sessions: Callable[[SendReport], None]) -> None:
    """`run_sessions(part)` in `sessions` threads at once (this one included), each filling a
    report of its own; then their sessions, outcomes and first error merged into `report`.
    Re-raises the first exception of any of them once all have ended."""
    if sessions <= 1:
        run_sessions(report)
        return
    parts = [SendReport(report.connection_id) for _ in range(sessions)]
    errors: list[BaseException] = []

    def in_thread(part: SendReport) -> None:
        try:
            run_sessions(part)
        except BaseException as exc:  # re-raised by the caller's thread
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's own database connection

    threads = [threading.Thread(target=in_thread, args=(part,), name=f"outbox-session-{i}", daemon=True)
               for i, part in enumerate(parts[1:], start=1)]
    for thread in threads:
        thread.start()
    try:
        run_sessions(parts[0])
    finally:
        for thread in threads:
            thread.join()
        for part in parts:
            report.sessions += part.sessions
            report.outcomes += part.outcomes
            report.error = report.error or part.error
    if errors:
        raise errors[0]
