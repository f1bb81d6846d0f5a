"""Poll schedules: intervals, weekly windows and cron in the connection's time zone."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest

from connections.errors import ValidationError
from connections.models import ScheduleKind
from connections.services.inbound import schedule
from connections.services.inbound.schedule import Schedule

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
