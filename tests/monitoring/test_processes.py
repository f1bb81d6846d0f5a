"""Real beat and worker processes (`celery -A tenantmail beat|worker`) with short intervals:
kill beat -> alert and /readyz 503; stop the worker -> alert, its e-mail through the real
Postfix into the real Dovecot mailbox (Django's EMAIL_BACKEND, for system alerts)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from connections.models import Alert, AlertState
from tests.celery_worker import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


class Processes:
    def __init__(self, **env: str) -> None:
        db = connection.settings_dict
        self.env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "CELERY_TASK_DEFAULT_QUEUE": f"tm-monitoring-{uuid.uuid4().hex[:8]}",
            "TENANTMAIL_VAR_DIR": tempfile.mkdtemp(prefix="tm-monitoring-"),
            "POLL_DISPATCH_INTERVAL": "1", "OUTBOX_DISPATCH_INTERVAL": "1", "MONITORING_HEARTBEAT_INTERVAL": "1",
            "WATCHDOG_INTERVAL": "1", "MONITORING_BACKGROUND": "true", **env,
        }
        self.env.pop("TM_TEST_DB", None)
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = Path(self.env["TENANTMAIL_VAR_DIR"])

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen([CELERY, "-A", "tenantmail", *args], cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def worker(self) -> subprocess.Popen:
        return self.start("worker", "worker", "-P", "solo", "-c", "1", "-l", "INFO", "--hostname",
                          f"mon-{uuid.uuid4().hex[:6]}@localhost", "--without-gossip", "--without-mingle")

    def beat(self) -> subprocess.Popen:
        return self.start("beat", "beat", "-l", "INFO", "-s", str(self.logs / "celerybeat-schedule"))

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture
def processes(settings):
    # This process (/readyz) judges with the same short intervals as the beat and worker.
    settings.POLL_DISPATCH_INTERVAL = settings.MONITORING_HEARTBEAT_INTERVAL = settings.WATCHDOG_INTERVAL = 1.0
    made: list[Processes] = []

    def make(**env: str) -> Processes:
        p = Processes(**env)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop_all()


def _ready() -> tuple[int, dict]:
    response = Client().get("/readyz")
    return response.status_code, response.json()


def _firing(key: str) -> Alert | None:
    return Alert.objects.filter(key=key, state=AlertState.FIRING).first()


def test_killed_beat_fires_an_alert_and_readyz_answers_503(processes, receiver):
    procs = processes(ALERT_WEBHOOK_URL=receiver.url, ALERT_WEBHOOK_SECRET=receiver.secret)
    procs.worker()
    beat = procs.beat()
    wait_until(lambda: _ready()[0] == 200, timeout=60, message=f"readyz 200 ({_ready()[1]})")
    # The worker may have started first and seen no beat yet: that alert resolves.
    wait_until(lambda: _firing("system:beat") is None, timeout=30, message="no beat alert while beat ticks")

    os.killpg(beat.pid, signal.SIGKILL)  # no goodbye: the heartbeat just stops
    beat.wait(timeout=30)
    # Stale after three dispatch intervals, at least 15 s; the worker's watchdog notices.
    alert = wait_until(lambda: _firing("system:beat"), timeout=60, message="the beat alert")
    assert alert.tenant_id is None and alert.severity == "critical"
    status, body = _ready()
    assert status == 503 and body["checks"]["beat"]["ok"] is False
    # The system webhook, delivered by the (still running) worker, signed.
    wait_until(lambda: any(a["kind"] == "beat_down" for c in receiver.calls for a in c["payload"]["alerts"]),
               timeout=30, message=f"the beat_down webhook; worker log: {procs.log('worker')}")
    assert all(c["verified"] for c in receiver.calls)


@pytest.mark.mailservers
def test_stopped_worker_fires_an_alert_mailed_through_postfix(processes, mail_servers):
    ops, _ = mail_servers.add_user()
    procs = processes(ALERT_EMAIL_TO=ops, EMAIL_HOST=mail_servers.host, EMAIL_PORT=str(mail_servers.ports["smtp_notls"]),
                      DEFAULT_FROM_EMAIL=f"tenantmail@{mail_servers.domain}")
    worker = procs.worker()
    procs.beat()
    wait_until(lambda: _ready()[0] == 200, timeout=60, message=f"readyz 200 ({_ready()[1]})")

    worker.send_signal(signal.SIGTERM)  # warm shutdown: marks its heartbeat stopped
    worker.wait(timeout=60)
    alert = wait_until(lambda: _firing("system:workers"), timeout=30,
                       message=f"the workers alert; beat log: {procs.log('beat')}")
    assert alert.tenant_id is None
    assert _ready()[1]["checks"]["workers"]["ok"] is False
    mails = list(mail_servers.wait_for_messages(ops, count=1, timeout=30).values())
    assert any(b"No Celery worker is running" in m for m in mails), mails
