"""IMAP IDLE push end to end: the run_idle runner, leases, the real Dovecot and a real Celery
worker. A mail appended on the server is stored without the schedule; a killed run_idle
process's connections are taken over; a server without IDLE falls back to the schedule."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from connections.models import PollRun, PushLease, PushState, StoredMessage
from tests.celery_worker import wait_until
from tests.inbound.mails import make_mail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]

ROOT = Path(__file__).resolve().parents[2]
LATER = timedelta(hours=6)


def _push_connection(make_inbound, address, password, **fields):
    # The schedule is far away: only push can bring the mail in during the test.
    return make_inbound(address, password, push=True, schedule_every=86400,
                        next_poll_at=timezone.now() + LATER, **fields)


def _state(conn) -> PushLease | None:
    return PushLease.objects.filter(connection=conn).first()


def test_appended_mail_is_stored_without_the_schedule(tenantmail_worker, mail_servers, make_inbound, idle_runner):
    address, password = mail_servers.add_user()
    conn = _push_connection(make_inbound, address, password)
    runner = idle_runner()
    wait_until(lambda: (s := _state(conn)) and s.state == PushState.IDLE, timeout=30, message="the IDLE session")
    lease = _state(conn)
    assert lease.holder == runner.holder and lease.connected_since is not None
    # Connecting polls once (mail that came while nobody listened): wait for it to finish.
    wait_until(lambda: PollRun.objects.filter(connection=conn, trigger="push").exclude(outcome="running").exists(),
               timeout=30, message="the catch-up poll")

    mail_servers.append(address, [make_mail("pushed")])
    wait_until(lambda: StoredMessage.objects.filter(connection=conn).exists(), timeout=30,
               message="the pushed mail to be stored")
    assert StoredMessage.objects.get(connection=conn).subject == "pushed"
    assert set(PollRun.objects.filter(connection=conn).values_list("trigger", flat=True)) == {"push"}
    lease = _state(conn)
    assert lease.last_event_at is not None and "EXISTS" in lease.last_event.upper()
    conn.refresh_from_db()
    assert conn.next_poll_at > timezone.now()  # the schedule stays armed as the fallback


def test_changed_settings_reconnect_and_push_off_releases(tenantmail_worker, mail_servers, make_inbound, idle_runner):
    address, password = mail_servers.add_user()
    conn = _push_connection(make_inbound, address, password)
    idle_runner()
    wait_until(lambda: (s := _state(conn)) and s.state == PushState.IDLE, timeout=30, message="the IDLE session")
    # Changed settings: a new session with them.
    since = _state(conn).connected_since
    conn.timeout = 20
    conn.save()
    wait_until(lambda: (s := _state(conn)) and s.state == PushState.IDLE and s.connected_since > since, timeout=30,
               message="a new session after the settings changed")
    conn.push = False
    conn.save(update_fields=["push"])
    wait_until(lambda: _state(conn).holder == "", timeout=30, message="the lease to be released")
    assert _state(conn).state == PushState.WAITING


def test_server_without_idle_falls_back_to_the_schedule(mail_servers, make_inbound, idle_runner):
    address, password = mail_servers.add_user()
    port = mail_servers.ports["imaps_noidle"]
    conn = _push_connection(make_inbound, address, password, port=port)
    idle_runner()
    wait_until(lambda: (s := _state(conn)) and s.state == PushState.UNSUPPORTED, timeout=30,
               message="the push state 'unsupported'")
    assert "does not offer IDLE" in _state(conn).last_error
    conn.refresh_from_db()
    assert conn.next_poll_at is not None  # still scheduled

    from connections.services.setup.checklist import evaluate

    items = {i.key: i for i in evaluate(connection=conn)}
    assert "push" in items and "does not offer IDLE" in items["push"].detail


def test_wrong_password_retries_with_backoff(mail_servers, make_inbound, idle_runner):
    address, password = mail_servers.add_user()
    conn = _push_connection(make_inbound, address, "wrong-password-1")
    idle_runner()
    wait_until(lambda: (s := _state(conn)) and s.state == PushState.RETRYING, timeout=30,
               message="the push state 'retrying'")
    lease = _state(conn)
    assert "authentication failed" in lease.last_error and "wrong-password-1" not in lease.last_error


def _run_idle_process() -> subprocess.Popen:
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_idle", "--lease-ttl", "6", "--tick", "0.5"], cwd=str(ROOT), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def test_lease_is_taken_over_when_a_run_idle_process_is_killed(tenantmail_worker, mail_servers, make_inbound):
    conns = []
    for _ in range(3):
        address, password = mail_servers.add_user()
        conns.append((_push_connection(make_inbound, address, password), address))
    first, second = _run_idle_process(), _run_idle_process()
    try:
        def all_idle():
            leases = list(PushLease.objects.filter(connection__in=[c for c, _ in conns]))
            return len(leases) == 3 and all(lease.state == PushState.IDLE for lease in leases)

        wait_until(all_idle, timeout=60, message="every push connection in IDLE")
        holders = {lease.connection_id: lease.holder for lease in PushLease.objects.filter(
            connection__in=[c for c, _ in conns])}
        assert all(f":{first.pid}:" in h or f":{second.pid}:" in h for h in holders.values())
        # Never two sessions for one mailbox: one holder per connection (one row each), and
        # the victim is the process holding the first connection.
        victim = first if f":{first.pid}:" in holders[conns[0][0].pk] else second
        survivor = second if victim is first else first
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)

        wait_until(lambda: all(f":{survivor.pid}:" in lease.holder and lease.state == PushState.IDLE
                               for lease in PushLease.objects.filter(connection__in=[c for c, _ in conns])),
                   timeout=60, message="the survivor to take every connection over")
        conn, address = conns[0]
        mail_servers.append(address, [make_mail("after takeover")])
        wait_until(lambda: StoredMessage.objects.filter(connection=conn, subject="after takeover").exists(),
                   timeout=30, message="the mail to be stored after the takeover")
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
