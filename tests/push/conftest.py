"""Fixtures of the push tests: the inbound fixtures (tenant, credentials, connections on the
real Dovecot) and a run_idle runner in a thread of the test process."""
from __future__ import annotations

import threading

import pytest

from tests.inbound.conftest import make_credential, make_inbound, tenant  # noqa: F401


@pytest.fixture
def idle_runner():
    """start(**options) -> IdleRunner running in a thread; stopped (leases released) after the test."""
    from django.db import connections

    from connections.services.push.runner import IdleRunner, RunnerOptions

    started = []

    def start(**options) -> IdleRunner:
        runner = IdleRunner(RunnerOptions(**{"tick_seconds": 0.5, "ttl_seconds": 5, **options}))
        stop = threading.Event()

        def main():
            try:
                runner.run(stop=stop)
            finally:
                connections.close_all()

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        started.append((runner, stop, thread))
        return runner

    yield start
    for _runner, stop, thread in started:
        stop.set()
        thread.join(timeout=20)
