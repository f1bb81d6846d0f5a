"""The oldest queued task's age on kombu's filesystem:// broker (the embedded broker): the
oldest message file's modification time, through the real kombu transport."""
from __future__ import annotations

import os
import time

import pytest
from kombu import Connection

from connections.services.monitoring.broker_fs import oldest_age


@pytest.mark.smoke
def test_oldest_task_age_from_the_filesystem_broker(tmp_path):
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path),
               "control_folder": str(tmp_path / "control"), "store_processed": False}
    with Connection("filesystem://", transport_options=options) as conn:
        channel = conn.default_channel
        queue = conn.SimpleQueue("tm-fs")
        other = conn.SimpleQueue("tm-other")
        try:
            assert oldest_age(channel, "tm-fs") is None  # empty
            queue.put({"n": 1})
            queue.put({"n": 2})
            other.put({"n": 3})
            now = time.time()
            files = sorted(p for p in tmp_path.iterdir() if p.name.endswith(".tm-fs.msg"))  # by publish order
            assert len(files) == 2
            os.utime(files[0], (now - 600, now - 600))  # published ten minutes ago
            os.utime(files[1], (now - 60, now - 60))
            [other_file] = [p for p in tmp_path.iterdir() if p.name.endswith(".tm-other.msg")]
            os.utime(other_file, (now - 3600, now - 3600))  # another queue: not counted
            assert oldest_age(channel, "tm-fs", now=now) == pytest.approx(600, abs=1)
            queue.get(timeout=1).ack()  # a consumer takes the oldest
            assert oldest_age(channel, "tm-fs", now=now) == pytest.approx(60, abs=1)
        finally:
            queue.close()
            other.close()


def test_not_the_filesystem_transport_says_unknown():
    with Connection("memory://") as conn:
        assert oldest_age(conn.default_channel, "celery") is None
