"""Schedules, mailbox locks, dispatch and history pruning (database only, no mail server)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.errors import ValidationError
from connections.models import InboundConnection, MailboxLock, PollOutcome, PollRun, ScheduleKind
from connections.services import locks, polling, schedule
from connections.services.schedule import Schedule

UTC = dt_timezone.utc


def test_interval_schedule():
    after = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert schedule.next_run(schedule=Schedule(every=90), after=after) == after + timedelta(seconds=90)


def test_weekly_window_in_its_time_zone():
    berlin = "Europe/Berlin"
    s = Schedule(kind=ScheduleKind.WEEKLY, every=900, weekdays=frozenset({0, 1, 2, 3, 4}), start_hour=8,
                 end_hour=18, timezone=berlin)
    tz = ZoneInfo(berlin)
    # Friday 17:50 local -> 18:05 is outside the window -> Monday 08:00 local.
    friday = datetime(2026, 11, 20, 17, 50, tzinfo=tz)
    nxt = schedule.next_run(schedule=s, after=friday)
    assert nxt.astimezone(tz) == datetime(2026, 11, 23, 8, 0, tzinfo=tz)
    assert nxt.tzinfo is not None
    # Inside the window: simply + interval.
    tuesday = datetime(2026, 11, 24, 9, 0, tzinfo=tz)
    assert schedule.next_run(schedule=s, after=tuesday).astimezone(tz) == datetime(2026, 11, 24, 9, 15, tzinfo=tz)
    # Early morning -> today's opening.
    early = datetime(2026, 11, 24, 5, 0, tzinfo=tz)
    assert schedule.next_run(schedule=s, after=early).astimezone(tz) == datetime(2026, 11, 24, 8, 0, tzinfo=tz)


def test_cron_schedule_in_time_zone_across_dst():
    s = Schedule(kind=ScheduleKind.CRON, cron="30 2 * * *", timezone="America/New_York")
    tz = ZoneInfo("America/New_York")
    nxt = schedule.next_run(schedule=s, after=datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    assert nxt.astimezone(tz).hour == 2 and nxt.astimezone(tz).minute == 30
    assert nxt.utcoffset() == timedelta(0)
    q = Schedule(kind=ScheduleKind.CRON, cron="*/15 8-18 * * 1-5", timezone="UTC")
    assert schedule.next_run(schedule=q, after=datetime(2026, 11, 21, 10, 0, tzinfo=UTC)) == datetime(
        2026, 11, 23, 8, 0, tzinfo=UTC)  # Saturday -> Monday 08:00


@pytest.mark.parametrize("bad,message", [
    (Schedule(kind=ScheduleKind.CRON, cron="61 * * * *"), "not a valid cron"),
    (Schedule(timezone="Mars/Olympus"), "Unknown time zone"),
    (Schedule(every=1), "at least"),
    (Schedule(kind=ScheduleKind.WEEKLY, weekdays=frozenset()), "weekday"),
    (Schedule(kind=ScheduleKind.WEEKLY, start_hour=18, end_hour=8), "hours"),
])
def test_invalid_schedules_are_refused_clearly(bad, message):
    with pytest.raises(ValidationError, match=message):
        schedule.validate(schedule=bad)


def test_describe():
    s = Schedule(kind=ScheduleKind.WEEKLY, every=600, weekdays=frozenset({0, 4}), start_hour=8, end_hour=17,
                 timezone="Europe/Paris")
    assert schedule.describe(schedule=s) == "every 10 minutes on Mon, Fri from 08:00 to 17:00 (Europe/Paris)"


@pytest.mark.django_db(transaction=True)
def test_lock_is_exclusive_expires_and_is_released():
    key = locks.mailbox_key(host="IMAP.Example.test", username="u@example.test", folder="INBOX")
    assert key == "imap.example.test|u@example.test|INBOX"
    first = locks.acquire(key=key, timeout_seconds=600)
    assert first
    assert locks.acquire(key=key, timeout_seconds=600) is None
    assert locks.extend(key=key, token=first, timeout_seconds=600)
    assert locks.acquire(key=key, timeout_seconds=600) is None
    # The holder "died" and its lock timeout passed: the lock is taken over.
    MailboxLock.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))
    second = locks.acquire(key=key, timeout_seconds=60)
    assert second and second != first
    assert not locks.extend(key=key, token=first, timeout_seconds=60)  # the old holder lost it
    assert not locks.release(key=key, token=first)
    assert locks.release(key=key, token=second)
    assert not MailboxLock.objects.exists()
    long = locks.mailbox_key(host="h", username="x" * 400, folder="INBOX")
    assert len(long) <= 255


def _connections(tenant, n: int, **fields) -> list[int]:
    rows = [InboundConnection(tenant=tenant, name=f"c{i}-{uuid.uuid4().hex[:6]}", host="127.0.0.1",
                              credential_name="x", **fields) for i in range(n)]
    return [c.pk for c in InboundConnection.objects.bulk_create(rows)]


@pytest.mark.django_db(transaction=True)
def test_claim_due_is_one_select_and_one_update(tenant):
    now = timezone.now()
    due = _connections(tenant, 30, next_poll_at=now - timedelta(seconds=5))
    never = _connections(tenant, 2, next_poll_at=None)  # new: due at once
    _connections(tenant, 5, next_poll_at=now + timedelta(minutes=5))  # not yet
    _connections(tenant, 5, next_poll_at=now - timedelta(minutes=5), enabled=False)
    _connections(tenant, 5, next_poll_at=now - timedelta(minutes=5), backoff_until=now + timedelta(minutes=1))
    with CaptureQueriesContext(db_connection) as queries:
        ids = polling.claim_due(now=now)
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
    assert [s.split()[0] for s in statements] == ["SELECT", "UPDATE"], statements
    assert sorted(ids) == sorted(due + never)
    # Claimed rows are pushed out: a second tick right away finds nothing.
    assert polling.claim_due(now=now) == []
    assert all(c.next_poll_at > now for c in InboundConnection.objects.filter(pk__in=ids))


@pytest.mark.django_db(transaction=True)
def test_locked_outcome_does_not_back_off(tenant, make_credential):
    conn = InboundConnection.objects.create(tenant=tenant, name="lk", host="127.0.0.1", protection="ssl_tls",
                                            port=1, credential_name=make_credential("lk@example.test"))
    key = locks.mailbox_key(host="127.0.0.1", username="lk@example.test", folder="INBOX")
    token = locks.acquire(key=key, timeout_seconds=60)
    try:
        result = polling.poll(connection_id=conn.pk)
    finally:
        locks.release(key=key, token=token)
    assert result.outcome == PollOutcome.LOCKED and "Another poll" in result.error
    conn.refresh_from_db()
    assert conn.consecutive_failures == 0 and conn.next_poll_at is not None
    assert PollRun.objects.get(pk=result.poll_run_id).outcome == PollOutcome.LOCKED


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fields,delay", [
    ({"schedule_every": 300}, 30),  # retried after 30 s, not after the 5-minute interval
    ({"schedule_every": 15}, 15),  # a shorter interval: after the interval
    ({"schedule_kind": ScheduleKind.CRON, "schedule_cron": "0 * * * *"}, 30),  # hourly cron: 30 s
])
def test_locked_poll_is_retried_soon_with_jitter(tenant, make_credential, fields, delay):
    """Two connections of one mailbox on aligned schedules must not keep colliding: the
    skipped one comes back after min(interval, 30 s) plus a little jitter."""
    user = f"lr-{uuid.uuid4().hex[:6]}@example.test"
    conn = InboundConnection.objects.create(tenant=tenant, name="lr", host="127.0.0.1", protection="ssl_tls",
                                            port=1, credential_name=make_credential(user), **fields)
    key = locks.mailbox_key(host="127.0.0.1", username=user, folder="INBOX")
    token = locks.acquire(key=key, timeout_seconds=600)
    retries = []
    try:
        for _ in range(8):
            result = polling.poll(connection_id=conn.pk)
            assert result.outcome == PollOutcome.LOCKED
            conn.refresh_from_db()
            finished = PollRun.objects.get(pk=result.poll_run_id).finished_at
            gap = (conn.next_poll_at - finished).total_seconds()
            assert delay - 0.5 <= gap <= delay * 1.2 + 0.5, gap
            retries.append(gap)
    finally:
        locks.release(key=key, token=token)
    assert len({round(r, 2) for r in retries}) > 1, "no jitter: skipped pollers would come back in step"
    assert conn.last_poll_at is None  # a skipped poll changes nothing but the next run


@pytest.mark.django_db(transaction=True)
def test_unreachable_server_fails_and_backs_off_up_to_an_hour(tenant, make_credential):
    conn = InboundConnection.objects.create(tenant=tenant, name="down", host="127.0.0.1", port=1,
                                            protection="ssl_tls", timeout=2, credential_name=make_credential())
    for expected in (1, 2, 4, 8):
        result = polling.poll(connection_id=conn.pk)
        assert result.outcome == PollOutcome.FAILED and result.error
        conn.refresh_from_db()
        assert round((conn.backoff_until - conn.last_poll_at).total_seconds() / 60) == expected
    InboundConnection.objects.filter(pk=conn.pk).update(consecutive_failures=12)
    conn.refresh_from_db()
    polling.poll(connection_id=conn.pk)
    conn.refresh_from_db()
    assert round((conn.backoff_until - conn.last_poll_at).total_seconds() / 60) == 60
    assert PollRun.objects.filter(connection=conn, outcome=PollOutcome.FAILED).count() == 5
    # In backoff: not dispatched even though next_poll_at is due.
    InboundConnection.objects.filter(pk=conn.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    assert conn.pk not in polling.claim_due()


@pytest.mark.django_db(transaction=True)
def test_prune_history(tenant, settings):
    conn = InboundConnection.objects.create(tenant=tenant, name="p", host="h")
    old = timezone.now() - timedelta(days=40)
    PollRun.objects.create(tenant=tenant, connection=conn, started_at=old, outcome=PollOutcome.SUCCESS)
    PollRun.objects.create(tenant=tenant, connection=conn, started_at=old, outcome=PollOutcome.RUNNING)
    recent = PollRun.objects.create(tenant=tenant, connection=conn, started_at=timezone.now(), outcome=PollOutcome.SUCCESS)
    settings.POLL_HISTORY_RETENTION_DAYS = 30
    assert polling.prune_history() == 1
    assert PollRun.objects.filter(pk=recent.pk).exists()
    stale = PollRun.objects.get(started_at=old)
    assert stale.outcome == PollOutcome.FAILED and "worker stopped" in stale.error


@pytest.mark.django_db(transaction=True)
def test_poll_refuses_to_run_inside_a_transaction(tenant, make_credential):
    from django.db import transaction

    from connections.errors import TenantMailError

    conn = InboundConnection.objects.create(tenant=tenant, name="tx", host="127.0.0.1", port=1,
                                            credential_name=make_credential())
    with pytest.raises(TenantMailError, match="inside a database transaction"):
        with transaction.atomic():
            polling.poll(connection_id=conn.pk)
    assert not PollRun.objects.exists()
