"""A real killed worker: a poll runs in a process of its own, against the real Dovecot and
this test's database, and is SIGKILLed after its batch is stored and committed, before the
post-processing on the server. The next poll completes the post-processing — no duplicate,
no loss — after the dead worker's lock expired."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from connections.models import MailboxLock, PollOutcome, PollRun, StoredMessage
from connections.services.inbound.poll import poll

from .mails import make_mail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]

ROOT = Path(__file__).resolve().parents[2]


def _poller_process(connection_id: int) -> subprocess.Popen:
    """`poll` in a process of its own on this test's database and media folder; it says
    STORED once its batch is committed (the `stored` point) and then waits to be killed."""
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    code = (
        "import time, django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        f"settings.MEDIA_ROOT = {str(settings.MEDIA_ROOT)!r}\n"
        "from connections.services.inbound import faults, poll\n"
        "def hook(point):\n"
        "    if point == 'stored':\n"
        "        print('STORED', flush=True)\n"
        "        time.sleep(300)\n"
        "with faults.installed(hook):\n"
        f"    print('RESULT', poll.poll(connection_id={connection_id}), flush=True)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> None:
    lines: queue.Queue[str] = queue.Queue()
    out = proc.stdout
    assert out is not None
    threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None and lines.empty():
                break
            continue
        seen.append(line)
        if line.strip() == text:
            return
    proc.kill()
    err = proc.stderr.read()[-3000:] if proc.stderr else ""
    pytest.fail(f"the poller never reached {text!r}: stdout {seen!r}, stderr {err!r}")


@pytest.mark.parametrize("protocol,mode", [("imap", "mark_read"), ("imap", "delete"), ("pop3", "delete")])
def test_sigkilled_poller_between_store_and_post_processing(mail_servers, mailbox, make_inbound, protocol, mode):
    address, password = mailbox
    mails = [make_mail(f"kill-{i}", body=f"body {i}") for i in range(4)]
    mail_servers.append(address, mails)
    conn = make_inbound(address, password, protocol=protocol, post_processing=mode, lock_timeout=600)

    worker = _poller_process(conn.pk)
    try:
        _wait_for_line(worker, "STORED", timeout=90)
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)

    # Committed by the dead worker, nothing done on the server, its lock and history left behind.
    stored = list(StoredMessage.objects.filter(connection=conn))
    assert len(stored) == 4
    assert all(m.post_processed_at is None for m in stored)
    assert all(default_storage.exists(m.raw.name) for m in stored)
    flags = mail_servers.flags(address)
    assert len(flags) == 4
    if protocol == "imap":
        assert not any("\\Seen" in f for f in flags.values())
    assert MailboxLock.objects.count() == 1
    assert PollRun.objects.get(connection=conn).outcome == PollOutcome.RUNNING

    # The lock of the dead worker is respected until it expires…
    assert poll(connection_id=conn.pk).outcome == PollOutcome.LOCKED
    MailboxLock.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    # …then recovered: the post-processing is completed, nothing is stored again.
    result = poll(connection_id=conn.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert result.stored == 0 and result.recovered == 4
    after = list(StoredMessage.objects.filter(connection=conn).order_by("pk"))
    assert [m.pk for m in after] == sorted(m.pk for m in stored)  # no duplicate, no loss
    assert all(m.post_processed_at is not None for m in after)
    raws = sorted(default_storage.open(m.raw.name).read() for m in after)
    assert len(set(raws)) == 4 and all(b"kill-" in r for r in raws)
    flags = mail_servers.flags(address)
    if mode == "mark_read":
        assert len(flags) == 4 and all("\\Seen" in f for f in flags.values())
    else:
        assert flags == {}
    dead = PollRun.objects.filter(connection=conn).order_by("started_at").first()
    assert dead.outcome == PollOutcome.FAILED and "worker stopped" in dead.error
    assert not MailboxLock.objects.exists()  # released by the recovering poll

    # And a further poll finds nothing new.
    again = poll(connection_id=conn.pk)
    assert again.outcome == PollOutcome.SUCCESS and again.stored == 0 and again.recovered == 0
    assert StoredMessage.objects.filter(connection=conn).count() == 4
