"""kombu's filesystem:// broker: the age of the oldest queued task.

Each queued task is one file `<n>_<uuid>.<queue>.msg` in the transport's `data_folder_in`,
written once at publish time (a consumer moves it away when it takes it): the oldest file's
modification time is the oldest task's publish time. One directory scan, one stat per queued
file — no message is read.
"""
from __future__ import annotations

import os
import time


def oldest_age(channel, queue: str, *, now: float | None = None) -> float | None:
    """Seconds the oldest message of `queue` has waited, None when the queue is empty or the
    channel is not kombu's filesystem transport."""
    folder = getattr(channel, "data_folder_in", None)
    if not folder or not hasattr(channel, "data_folder_out"):
        return None
    suffix = f".{queue}.msg"
    oldest = None
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.endswith(suffix):
                    continue
                try:
                    mtime = entry.stat().st_mtime
                except FileNotFoundError:
                    continue  # a consumer took it meanwhile
                if oldest is None or mtime < oldest:
                    oldest = mtime
    except FileNotFoundError:
        return None
    if oldest is None:
        return None
    return max(0.0, (now if now is not None else time.time()) - oldest)
