"""./scripts/run end to end, as a new user runs it: in a fresh copy of the project, on
SQLite + the embedded broker and on PostgreSQL + Redis. Web answers with its static files,
beat's tick reaches the worker, and one SIGINT (Ctrl-C) stops everything, leaving no
process behind. Also the supervisor on its own: a process that dies stops the others."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
SKIP_NAMES = {".git", ".venv", "var", ".env", "__pycache__", ".pytest_cache", "test-artifacts", "node_modules"}


class Output:
    """Collects a process's output lines in a thread; `wait_for` a pattern."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text(), re.M)
            if match:
                return match
            time.sleep(0.2)
        pytest.fail(f"no line matching {pattern!r} within {timeout:g}s; output:\n{self.text()[-6000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_in_groups(groups: set[int]) -> list[str]:
    """Live processes whose process group is one of `groups` (zombies excluded)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp in groups and state != "Z":
            alive.append(stat.parent.name)
    return alive


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A fresh copy of the project sharing this checkout's virtualenv."""
    copy = tmp_path / "tenantmail"
    shutil.copytree(ROOT, copy, ignore=lambda _dir, names: [n for n in names if n in SKIP_NAMES])
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def clean_env(home: Path, **variables: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "SUPERVISE_GRACE": "15",
        "POLL_DISPATCH_INTERVAL": "1",
        "OUTBOX_DISPATCH_INTERVAL": "1",
        "TENANTMAIL_ADMIN_PASSWORD": "Run-test-pw-2718",
        "CELERY_CONCURRENCY": "1",
        "WEB_CONCURRENCY": "1",
    }
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "PIP_DEFAULT_TIMEOUT"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(variables)
    return env


def run_everything(copy: Path, env: dict[str, str]) -> None:
    port = free_port()
    env = dict(env, PORT=str(port))
    proc = subprocess.Popen(
        ["bash", str(copy / "scripts" / "run")], cwd=copy, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    out = Output(proc)
    groups: set[int] = set()
    try:
        out.wait_for(r"^\[web\].*Listening at: http://127\.0\.0\.1:%d" % port, timeout=180)
        groups = {int(pid) for pid in re.findall(r"^\[run\]\s+started \w+ \(pid (\d+)\)", out.text(), re.M)}
        assert len(groups) == 4, out.text()
        assert "Created the admin user 'admin'" in out.text()
        assert (copy / ".env").is_file() and "FERNET_KEYS=" in (copy / ".env").read_text()

        base = f"http://127.0.0.1:{port}"
        login = urllib.request.urlopen(base + "/admin/login/", timeout=10).read().decode()
        css = re.search(r'href="(/static/admin/css/base[^"]*\.css)"', login).group(1)
        response = urllib.request.urlopen(base + css, timeout=10)
        assert response.status == 200 and "text/css" in response.headers["Content-Type"]
        assert b"body" in response.read()

        # Beat's one-second tick reaches the worker through the broker.
        out.wait_for(r"^\[beat\].*Sending due task dispatch-due-polls", timeout=60)
        out.wait_for(r"^\[worker\].*Task connections\.tasks\.dispatch_due_polls\[[^\]]+\] received", timeout=60)
        # The IMAP IDLE push service runs beside them.
        out.wait_for(r"^\[idle\].*run_idle \S+: holding up to \d+ IDLE sessions", timeout=60)

        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground process
        assert proc.wait(timeout=60) == 0, out.text()[-4000:]
        out.wait_for(r"^\[run\]\s+all processes stopped\.", timeout=5)
        for name in ("web", "worker", "beat", "idle"):
            assert re.search(rf"^\[run\]\s+{name} stopped\.", out.text(), re.M), name
        assert processes_in_groups(groups | {proc.pid}) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_run_on_sqlite_and_the_embedded_broker(project_copy, tmp_path):
    run_everything(project_copy, clean_env(tmp_path))
    assert (project_copy / "var" / "tenantmail.sqlite3").is_file()
    assert (project_copy / "var" / "broker" / "queue").is_dir()


def test_run_on_postgresql_and_redis(project_copy, tmp_path):
    import psycopg

    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.fail("this test needs the PostgreSQL pass (DATABASE_URL=postgres://…)")
    name = f"tm_run_{uuid.uuid4().hex[:10]}"
    server = f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = clean_env(
            tmp_path,
            DATABASE_URL=f"{server}/{name}",
            CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
            CELERY_TASK_DEFAULT_QUEUE=f"tenantmail-runtest-{uuid.uuid4().hex[:8]}",
        )
        run_everything(project_copy, env)
        assert not (project_copy / "var" / "tenantmail.sqlite3").exists()
        with psycopg.connect(f"{server}/{name}") as conn:
            assert conn.execute("SELECT count(*) FROM auth_user WHERE is_superuser").fetchone()[0] == 1
    finally:
        with psycopg.connect(server + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.smoke
def test_supervisor_stops_everything_when_one_process_dies(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "supervise.py"),
         "sleeper=sleep 300", "spawner=bash -c 'sleep 301 & wait'", "quitter=bash -c 'echo bye; sleep 1; exit 3'"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(os.environ, SUPERVISE_GRACE="5", NO_COLOR="1"), start_new_session=True,
    )
    out = Output(proc)
    assert proc.wait(timeout=30) == 1
    time.sleep(0.3)
    text = out.text()
    assert re.search(r"^\[quitter\]\s+bye$", text, re.M)
    assert "quitter exited with status 3; stopping the others." in text
    groups = {int(pid) for pid in re.findall(r"started \w+ \(pid (\d+)\)", text)}
    assert len(groups) == 3 and processes_in_groups(groups) == []


@pytest.mark.smoke
def test_supervisor_kills_what_ignores_sigterm_after_the_grace_period(tmp_path):
    stubborn = "bash -c 'trap \"\" TERM; sleep 300 & wait; sleep 300'"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "supervise.py"), f"stubborn={stubborn}", "plain=sleep 300"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(os.environ, SUPERVISE_GRACE="2", NO_COLOR="1"), start_new_session=True,
    )
    out = Output(proc)
    out.wait_for(r"started plain", timeout=10)
    time.sleep(0.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    assert time.monotonic() - started >= 1.5  # waited for the grace period, then killed
    assert "stubborn did not stop within 2s; killing it." in out.text()
    groups = {int(pid) for pid in re.findall(r"started \w+ \(pid (\d+)\)", out.text())}
    assert processes_in_groups(groups) == []
