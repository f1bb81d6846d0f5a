"""Shared fixtures. Real services: PostgreSQL, Redis, Dovecot, Postfix — never mocks."""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings

# Real Dovecot + Postfix: fixtures `mail_servers` (session) and `mailbox` (see its docstring).
# A real Celery worker: fixture `tenantmail_worker` (one per session; each test ends once it is idle) and `wait_until`.
pytest_plugins = ["tests.mailservers", "tests.celery_worker", "tests.oauth2_server", "tests.proxies"]


def _reachable(url: str, default_port: int) -> tuple[str, int, bool]:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        socket.create_connection((host, port), timeout=3).close()
        return host, port, True
    except OSError:
        return host, port, False


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail at once, with a clear message, when a service the suite needs is down.

    Says in one line which mail corpus the corpus tests read (tests/mailcorpus): the
    generated mails, plus the public corpus when it is there; without it CI=true fails."""
    from tests import mailcorpus

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    line = mailcorpus.status_line()
    if reporter:
        reporter.write_line(line, yellow=mailcorpus.public_dir() is None)
    if mailcorpus.public_dir() is None and mailcorpus.running_in_ci():
        pytest.exit(f"CI=true and the public mail corpus is missing at {mailcorpus.public_where()}: "
                    "put it there or point TENANTMAIL_CORPUS at it.", 1)
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        host, port = db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)
        if not _reachable(f"pg://{host}:{port}", 5432)[2]:
            pytest.exit(f"PostgreSQL is not reachable at {host}:{port}; start it (see README, Tests).", 2)
    broker = settings.CELERY_BROKER_URL
    if broker.startswith("redis://"):
        host, port, ok = _reachable(broker, 6379)
        if not ok:
            pytest.exit(f"Redis is not reachable at {host}:{port}; start it (see README, Tests).", 2)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (CI=true) a skipped test fails the run: every test must really run there."""
    if os.environ.get("CI", "").lower() not in {"1", "true", "yes"}:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) skipped; in CI every test must run.", red=True, bold=True)
        session.exitstatus = 1
