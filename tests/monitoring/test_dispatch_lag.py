"""The dispatch lag histogram: observed at the start of each scheduled poll from the
connection's due time (real Dovecot, real claim by the dispatcher), counted in the database so
every process's polls add up, exposed by /metrics."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import InboundConnection, MetricCounter, UserCredential
from connections.services.inbound import dispatch
from connections.services.inbound.poll import poll
from connections.services.setup import credentials
from connections.services.monitoring import lag

from .test_processes import processes  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _bucket(le: str) -> float:
    """The cumulative bucket as /metrics shows it (the rows count per bucket)."""
    from connections.services.monitoring.metrics import LAG_BUCKETS

    bounds = [str(b) for b in LAG_BUCKETS if b <= float(le)]
    rows = MetricCounter.objects.filter(name="tenantmail_dispatch_lag_seconds_bucket",
                                        labels__in=[f'le="{b}"' for b in bounds])
    return sum(r.value for r in rows)


def _count() -> float:
    return sum(r.value for r in MetricCounter.objects.filter(name="tenantmail_dispatch_lag_seconds_bucket"))


def test_scheduled_poll_observes_its_lag_and_manual_poll_does_not(tenant, mail_servers, client, settings):
    address, password = mail_servers.add_user()
    cred = credentials.save_artifact(credential=UserCredential(tenant=tenant, name=f"c-{uuid.uuid4().hex[:6]}",
                                                               username=address), password=password)
    credentials.deploy(credential_id=cred.pk, user=None)
    last = timezone.now() - timedelta(minutes=10)
    conn = InboundConnection.objects.create(
        tenant=tenant, name="orders", host=mail_servers.host, port=mail_servers.ports["imaps"], protection="ssl_tls",
        authentication="plain", credential_name=cred.name, trusted_ca=mail_servers.ca_pem, timeout=10,
        schedule_every=60, last_poll_at=last, last_poll_ok=True,
    )
    # Due one interval after its last poll (nine minutes ago); the dispatcher claims it now.
    InboundConnection.objects.filter(pk=conn.pk).update(next_poll_at=last + timedelta(seconds=60))
    assert dispatch.claim_due() == [conn.pk]
    conn.refresh_from_db()
    assert conn.next_poll_at > timezone.now()  # pushed out by the claim horizon
    assert conn.dispatched_due_at == last + timedelta(seconds=60)  # kept by the claim

    assert poll(connection_id=conn.pk, trigger="schedule").outcome == "success"
    assert _count() == 1
    assert _bucket("300.0") == 0 and _bucket("900.0") == 1 and _bucket("3600.0") == 1
    lag_sum = MetricCounter.objects.get(name="tenantmail_dispatch_lag_seconds_sum").value
    assert 9 * 60 <= lag_sum < 900

    assert poll(connection_id=conn.pk, trigger="manual").outcome == "success"
    assert _count() == 1  # a manual poll was never due: no observation

    settings.METRICS_TOKEN = "tok-lag"
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok-lag").content.decode()
    assert "# TYPE tenantmail_dispatch_lag_seconds histogram" in text
    assert 'tenantmail_dispatch_lag_seconds_bucket{le="900.0"} 1.0' in text
    assert 'tenantmail_dispatch_lag_seconds_bucket{le="+Inf"} 1.0' in text
    assert "tenantmail_dispatch_lag_seconds_count 1.0" in text
    assert "# TYPE tenantmail_poll_duration_seconds histogram" in text
    assert "tenantmail_poll_duration_seconds_count 2.0" in text


@pytest.mark.smoke
def test_lag_is_measured_from_the_claimed_due_time_only_for_scheduled_polls(tenant):
    now = timezone.now()
    conn = InboundConnection.objects.create(tenant=tenant, name="x", host="imap.example", schedule_every=60,
                                            last_poll_at=now - timedelta(minutes=5), last_poll_ok=False,
                                            consecutive_failures=3)
    assert lag.dispatch_lag(connection=conn, started_at=now, trigger="schedule") is None  # never claimed
    # Backing off: due at the end of the backoff (next_poll_at includes it), claimed a minute later.
    InboundConnection.objects.filter(pk=conn.pk).update(next_poll_at=now - timedelta(minutes=1))
    assert conn.pk in dispatch.claim_due(now=now)
    conn.refresh_from_db()
    assert lag.dispatch_lag(connection=conn, started_at=now, trigger="schedule") == 60.0
    assert lag.dispatch_lag(connection=conn, started_at=now, trigger="manual") is None


def test_lag_across_real_beat_and_prefork_worker_processes(tenant, processes, client, settings):
    """Beat (its own process) claims two overdue connections, a prefork worker's children poll
    them (closed ports: they fail fast); this process reads both observations."""
    from tests.celery_worker import wait_until

    from .test_mail_alerts import _closed_port

    last = timezone.now() - timedelta(minutes=10)
    for name in ("a", "b"):
        c = InboundConnection.objects.create(tenant=tenant, name=name, host="127.0.0.1", port=_closed_port("127.0.0.1"),
                                             protection="ssl_tls", authentication="none", timeout=5,
                                             schedule_every=60, last_poll_at=last, last_poll_ok=True)
        InboundConnection.objects.filter(pk=c.pk).update(next_poll_at=last + timedelta(seconds=60))
    p = processes()
    p.start("worker", "worker", "-P", "prefork", "-c", "2", "-l", "INFO", "--hostname",
            f"lag-{uuid.uuid4().hex[:6]}@localhost", "--without-gossip", "--without-mingle")
    p.beat()
    wait_until(lambda: _count() >= 2, timeout=60, message=f"two observations\n{p.log('worker')}")
    assert _count() == 2 and _bucket("300.0") == 0 and _bucket("900.0") == 2
    settings.METRICS_TOKEN = "tok-lag2"
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok-lag2").content.decode()
    assert 'tenantmail_dispatch_lag_seconds_bucket{le="900.0"} 2.0' in text
    assert 'tenantmail_polls_total{outcome="failed"} 2.0' in text
