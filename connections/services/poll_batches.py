"""Scheduled polls handed out in small batches: one Celery task polls a few connections, one
after another, each with its own poll() (own timeout, history row and mailbox lock).

Why batches: at 10,000 connections a minute the per-task cost of Celery — publishing one
message per poll at dispatch, receiving, acknowledging and tracing it in the worker — was
as large as a failing poll itself (bench/scale.py). A batch of POLL_TASK_BATCH ids pays it
once. What it costs: the polls of one batch run in turn, so a poll that waits for its
timeout delays the others of its batch (at most POLL_TASK_BATCH − 1 of them, by at most
that connection's timeout); POLL_TASK_BATCH=1 restores one task per poll.

Exactly-once is unchanged: each poll is the same poll() with the same lock and the same
unique constraints. A batch redelivered after a worker died re-polls its connections;
a second poll of a mailbox is harmless (it finds nothing new, or the lock).
"""
from __future__ import annotations

import logging


from connections.conf import conf
from ..models import InboundConnection
from . import polling

log = logging.getLogger(__name__)


def batch_size() -> int:
    return max(1, int(conf.POLL_TASK_BATCH))


def batches(ids: list[int], *, size: int | None = None) -> list[list[int]]:
    """The claimed ids in batches of at most `size` (default POLL_TASK_BATCH)."""
    size = size or batch_size()
    return [ids[start:start + size] for start in range(0, len(ids), size)]


def poll_each(*, connection_ids: list[int], trigger: str = "schedule") -> int:
    """Poll the connections one after another; returns how many were polled. A deleted
    connection is skipped; an unexpected error in one poll does not stop the others."""
    done = 0
    for connection_id in connection_ids:
        try:
            polling.poll(connection_id=int(connection_id), trigger=trigger)
            done += 1
        except InboundConnection.DoesNotExist:
            continue  # deleted while the task waited in the queue
        except Exception:  # poll() records mail and server trouble itself; this is a bug or the database
            log.exception("poll of inbound connection %s failed", connection_id)
    return done
