"""/healthz, /readyz, /metrics, `manage.py health`, check_setup's run-time state, the alerts:
block of the configuration file, the operations view and its lock monitor."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from connections.models import (
    Alert,
    AlertSettings,
    InboundConnection,
    MailboxLock,
    Membership,
    MetricCounter,
    OutboundConnection,
    PollRun,
    Tenant,
)
from connections.services.setup import config
from connections.services.setup import checklist
from connections.services.monitoring import heartbeats, metrics, watchdog

pytestmark = [pytest.mark.django_db]


def _alive():
    heartbeats.record(name="beat", kind="beat")
    heartbeats.record(name="worker:test@host", kind="worker")


@pytest.mark.smoke
def test_healthz_touches_nothing_and_readyz_says_why(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["beat"]["ok"] is False and body["checks"]["workers"]["ok"] is False
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]
    _alive()
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()


def test_readyz_has_no_tenant_data(client, tenant):
    InboundConnection.objects.create(tenant=tenant, name="secret-box", host="imap.private.example",
                                     last_poll_ok=False, consecutive_failures=9, last_error="password wrong")
    text = client.get("/readyz").content.decode()
    assert tenant.slug not in text and "private" not in text and "secret-box" not in text


@pytest.mark.smoke
def test_metrics_need_the_bearer_token(client, settings, tenant):
    settings.METRICS_TOKEN = "tok-123"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    metrics.count_poll(outcome="success", stored=12, bytes_stored=3400, duration_s=1.3)
    metrics.count_poll(outcome="failed", stored=0, bytes_stored=0, duration_s=0.2)
    metrics.count_sends(outcomes={"sent": 3, "failed": 1})
    InboundConnection.objects.create(tenant=tenant, name="a", host="imap.example", last_poll_ok=False,
                                     consecutive_failures=5, last_poll_at=timezone.now())
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok-123").content.decode()
    assert 'tenantmail_polls_total{outcome="success"} 1.0' in text
    assert 'tenantmail_polls_total{outcome="failed"} 1.0' in text
    assert "tenantmail_mails_stored_total 12.0" in text and "tenantmail_bytes_stored_total 3400.0" in text
    assert 'tenantmail_poll_duration_seconds_bucket{le="2.5"} 2.0' in text
    assert 'tenantmail_poll_duration_seconds_bucket{le="1.0"} 1.0' in text
    assert 'tenantmail_send_outcomes_total{outcome="sent"} 3.0' in text
    assert 'tenantmail_inbound_connections{state="failing"} 1.0' in text
    assert "tenantmail_queue_depth" in text and "tenantmail_dispatch_waiting_seconds" in text
    assert "# TYPE tenantmail_dispatch_lag_seconds histogram" in text
    assert 'tenantmail_outbound_connections{state="ok"} 0.0' in text
    assert tenant.slug not in text  # bounded labels: no tenant or connection names


def test_metrics_off_without_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404


def test_health_command_exit_codes(tenant, capsys):
    with pytest.raises(SystemExit) as exc:
        call_command("health")
    assert exc.value.code == 1
    assert "beat" in capsys.readouterr().out
    _alive()
    InboundConnection.objects.create(tenant=tenant, name="box", host="imap.example", last_poll_ok=False,
                                     consecutive_failures=5, last_poll_at=timezone.now())
    with pytest.raises(SystemExit) as exc:
        call_command("health", "--json")
    assert exc.value.code == 1
    body = json.loads(capsys.readouterr().out)
    assert body["status"] == "problems" and any("failing" in p["title"] for p in body["problems"])
    InboundConnection.objects.all().delete()
    call_command("health")  # healthy: returns (exit 0)
    assert "Healthy." in capsys.readouterr().out


def test_failing_connection_is_never_ready_and_check_setup_says_so(tenant, capsys):
    conn = InboundConnection.objects.create(
        tenant=tenant, name="orders", host="imap.example", authentication="none", protection="ssl_tls",
        last_test_at=timezone.now(), last_test_ok=True, last_poll_at=timezone.now(), last_poll_ok=False,
        consecutive_failures=1, backoff_until=timezone.now() + timedelta(minutes=1),
        last_error="No User Credentials artifact named 'x'",
    )
    ev = checklist.evaluation(connection=conn)
    assert ev.readiness != "ready"
    assert ev.item("runtime").label == "Polling: backing off"
    with pytest.raises(CommandError) as exc:
        call_command("check_setup", "--json")
    assert exc.value.returncode == 1
    [row] = json.loads(capsys.readouterr().out)["connections"]
    assert row["state"] == "backing_off" and "No User Credentials" in row["state_detail"]
    InboundConnection.objects.filter(pk=conn.pk).update(consecutive_failures=3)
    with pytest.raises(CommandError):  # failing: Blocked
        call_command("check_setup")
    out = capsys.readouterr().out
    assert "[failing]" in out and "No User Credentials" in out
    InboundConnection.objects.filter(pk=conn.pk).update(enabled=False)
    call_command("check_setup", "--json")
    assert json.loads(capsys.readouterr().out)["connections"][0]["state"] == "disabled"


CONFIG = """
tenants:
  - slug: acme
    name: Acme
    outbound:
      - name: notifications
        host: smtp.acme.example
        from: ops@acme.example
        authentication: none
    alerts:
      email_to: [ops@acme.example]
      email_via: notifications        # an outbound connection of this tenant
      webhook_url: https://hooks.example/tenantmail
      webhook_secret_env: ACME_ALERT_WEBHOOK_SECRET
      failing_after: 3                # consecutive failed polls or sends before an alert
      remind_every_hours: 24
"""


@pytest.mark.smoke
def test_alerts_block_applies_and_exports(db):
    config.apply(config.load(CONFIG))
    s = AlertSettings.objects.get(tenant__slug="acme")
    assert s.email_to == ["ops@acme.example"] and s.email_via == "notifications" and s.failing_after == 3
    exported = config.export()["tenants"][0]["alerts"]
    assert exported == {"email_to": ["ops@acme.example"], "email_via": "notifications",
                        "webhook_url": "https://hooks.example/tenantmail",
                        "webhook_secret_env": "ACME_ALERT_WEBHOOK_SECRET", "failing_after": 3,
                        "remind_every_hours": 24}
    assert not config.apply(config.load(CONFIG)).changes  # idempotent


def test_alerts_block_errors_name_the_place(db):
    bad = CONFIG.replace("email_via: notifications", "email_via: nope").replace("failing_after: 3", "failing_after: 0")
    with pytest.raises(config.ConfigValidationError) as exc:
        config.apply(config.load(bad))
    text = str(exc.value)
    assert "tenants[0].alerts.failing_after: expected a whole number >= 1, got 0" in text
    assert "tenants[0].alerts.email_via: 'nope' is not an outbound connection of this tenant" in text


def _staff(username: str, tenant: Tenant | None, role: str = "operator", superuser: bool = False) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True, is_superuser=superuser)
    if tenant is not None:
        Membership.objects.create(user=user, tenant=tenant, role=role)
    c = Client()
    c.force_login(user)
    return c


def test_operations_view_worst_first_and_tenant_scoped(tenant):
    other = Tenant.objects.create(slug="other", name="Other")
    now = timezone.now()
    InboundConnection.objects.create(tenant=tenant, name="fine", host="imap.example", last_poll_at=now,
                                     last_poll_ok=True)
    InboundConnection.objects.create(tenant=tenant, name="broken", host="imap.example", last_poll_at=now,
                                     last_poll_ok=False, consecutive_failures=4, last_error="refused")
    InboundConnection.objects.create(tenant=other, name="theirs", host="imap.other.example")
    watchdog.run_pass()
    page = _staff("op", tenant).get("/admin/connections/alert/operations/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.index("broken") < html.index("fine")
    assert "theirs" not in html
    assert "Celery beat is not ticking" not in html  # system alerts: superusers only
    assert 'http-equiv="refresh"' in html
    admin_html = _staff("root", None, superuser=True).get("/admin/connections/alert/operations/").content.decode()
    assert "Celery beat is not ticking" in admin_html and "theirs" in admin_html
    # The alert list is scoped the same way.
    alerts_html = _staff("op2", tenant, role="viewer").get("/admin/connections/alert/").content.decode()
    assert "broken" in alerts_html and "Celery beat" not in alerts_html


def test_lock_monitor_release_by_operator(tenant):
    conn = InboundConnection.objects.create(tenant=tenant, name="orders", host="IMAP.example", folder="INBOX")
    now = timezone.now()
    run = PollRun.objects.create(tenant=tenant, connection=conn, started_at=now)
    lock = MailboxLock.objects.create(key="imap.example|orders@acme|INBOX", token="t", acquired_at=now,
                                      expires_at=now + timedelta(minutes=30), holder="worker-1:123")
    viewer = _staff("viewer", tenant, role="viewer")
    html = viewer.get("/admin/connections/alert/operations/").content.decode()
    assert "imap.example|orders@acme|INBOX" in html and f"poll #{run.pk}" in html and "worker-1:123" in html
    assert 'value="Release"' not in html
    viewer.post(f"/admin/connections/alert/operations/locks/{lock.pk}/release/")
    assert MailboxLock.objects.filter(pk=lock.pk).exists()
    outsider = _staff("outsider", Tenant.objects.create(slug="x", name="X"))
    outsider.post(f"/admin/connections/alert/operations/locks/{lock.pk}/release/")
    assert MailboxLock.objects.filter(pk=lock.pk).exists()
    operator = _staff("operator", tenant)
    assert 'value="Release"' in operator.get("/admin/connections/alert/operations/").content.decode()
    response = operator.post(f"/admin/connections/alert/operations/locks/{lock.pk}/release/")
    assert response.status_code == 302
    assert not MailboxLock.objects.filter(pk=lock.pk).exists()


@pytest.mark.smoke
def test_operations_sql_states_match_the_runtime_rules(tenant):
    from connections.services.monitoring import operations, runtime

    now = timezone.now()
    AlertSettings.objects.create(tenant=tenant, failing_after=2)
    cases = {
        "ok": dict(last_poll_at=now, last_poll_ok=True),
        "never-polled-new": dict(),
        "disabled": dict(enabled=False, last_poll_ok=False, consecutive_failures=9),
        "failing": dict(last_poll_at=now, last_poll_ok=False, consecutive_failures=2),
        "backing": dict(last_poll_at=now, last_poll_ok=False, consecutive_failures=1),
        "overdue": dict(last_poll_at=now - timedelta(hours=1), last_poll_ok=True, schedule_every=60),
        "cron-overdue": dict(schedule_kind="cron", schedule_cron="* * * * *", next_poll_at=now - timedelta(hours=1)),
        "cron-ok": dict(schedule_kind="cron", schedule_cron="* * * * *", next_poll_at=now + timedelta(minutes=1)),
    }
    for name, fields in cases.items():
        InboundConnection.objects.create(tenant=tenant, name=name, host="imap.example", **fields)
    sql = dict(InboundConnection.objects.annotate(r=operations.state_rank_expression(now)).values_list("name", "r"))
    python = {c.name: runtime.RANK[runtime.inbound_state(c, now=now).state] for c in InboundConnection.objects.all()}
    assert sql == python
    assert python["failing"] == runtime.RANK[runtime.FAILING] and python["overdue"] == runtime.RANK[runtime.OVERDUE]
    data = operations.overview(tenant_ids=[tenant.pk], now=now)
    assert data.counts == {"ok": 3, "failing": 1, "backing_off": 1, "overdue": 2, "disabled": 1}
    assert [r.name for r in data.rows[:2]] == ["failing", "backing"]


def test_admin_list_never_shows_a_backing_off_connection_ready(tenant):
    InboundConnection.objects.create(
        tenant=tenant, name="orders", host="imap.example", authentication="none", protection="ssl_tls",
        last_test_at=timezone.now(), last_test_ok=True, last_poll_at=timezone.now(), last_poll_ok=False,
        consecutive_failures=1, backoff_until=timezone.now() + timedelta(minutes=1),
        last_error="Poll: No User Credentials artifact named 'x'",
    )
    admin = _staff("root", None, superuser=True)
    listing = admin.get("/admin/connections/inboundconnection/").content.decode()
    assert 'data-readiness="attention"' in listing and "No User Credentials" in listing
    assert 'data-readiness="ready"' not in listing
    assert admin.get("/admin/connections/inboundconnection/?readiness=ready").context["cl"].result_count == 0


def test_health_exits_2_when_it_cannot_check(tmp_path):
    """A real `manage.py health` against a database port where nothing listens."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tenantmail.settings", "TENANTMAIL_ENV_FILE": "/nonexistent",
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/nothing", "TENANTMAIL_VAR_DIR": str(tmp_path)}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "manage.py", "health", "--json"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "unknown" and "OperationalError" in body["error"]
