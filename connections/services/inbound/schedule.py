"""Poll schedules: every N seconds, on chosen weekdays between chosen hours, or cron.

All computed in the connection's own time zone (zoneinfo, so daylight saving time is
handled), stored as an aware UTC datetime in `next_poll_at`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.utils import timezone

from ...errors import ValidationError
from ...models import InboundConnection, ScheduleKind

MIN_INTERVAL_SECONDS = 10
WEEKDAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@dataclass(frozen=True)
class Schedule:
    kind: str = ScheduleKind.INTERVAL
    every: int = 300
    weekdays: frozenset[int] = frozenset(range(5))
    start_hour: int = 0
    end_hour: int = 24
    cron: str = ""
    timezone: str = "UTC"

    @classmethod
    def of(cls, connection: InboundConnection) -> "Schedule":
        return cls(
            kind=connection.schedule_kind, every=connection.schedule_every,
            weekdays=parse_weekdays(connection.schedule_weekdays), start_hour=connection.schedule_start_hour,
            end_hour=connection.schedule_end_hour, cron=connection.schedule_cron.strip(),
            timezone=connection.timezone or "UTC",
        )


def parse_weekdays(text: str) -> frozenset[int]:
    days = set()
    for item in (text or "").replace(" ", "").split(","):
        if not item:
            continue
        if not item.isdigit() or not 0 <= int(item) <= 6:
            raise ValidationError(
                f"Weekday {item!r} is not valid.", hint="use numbers 0 (Monday) to 6 (Sunday), comma-separated"
            )
        days.add(int(item))
    return frozenset(days)


def validate(*, schedule: Schedule) -> None:
    """Raise ValidationError with a clear message when the schedule cannot run."""
    try:
        ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"Unknown time zone {schedule.timezone!r}.", hint="use an IANA name such as Europe/Berlin or UTC"
        ) from None
    if schedule.kind in (ScheduleKind.INTERVAL, ScheduleKind.WEEKLY) and schedule.every < MIN_INTERVAL_SECONDS:
        raise ValidationError(f"The interval must be at least {MIN_INTERVAL_SECONDS} seconds.")
    if schedule.kind == ScheduleKind.WEEKLY:
        if not schedule.weekdays:
            raise ValidationError("Choose at least one weekday.")
        if not 0 <= schedule.start_hour < schedule.end_hour <= 24:
            raise ValidationError(
                "The hours must satisfy 0 <= start < end <= 24.", hint="e.g. from 8 to 18 polls during office hours"
            )
    if schedule.kind == ScheduleKind.CRON:
        if not schedule.cron or not croniter.is_valid(schedule.cron):
            raise ValidationError(
                f"{schedule.cron!r} is not a valid cron expression.",
                hint="five fields: minute hour day-of-month month day-of-week, e.g. '*/15 8-18 * * 1-5'",
            )


def next_run(*, schedule: Schedule, after: datetime | None = None) -> datetime:
    """The first poll time strictly after `after` (default: now), aware, in UTC."""
    after = after or timezone.now()
    tz = ZoneInfo(schedule.timezone or "UTC")
    if schedule.kind == ScheduleKind.CRON:
        local = after.astimezone(tz)
        nxt = croniter(schedule.cron, local).get_next(datetime)
        return nxt.astimezone(dt_timezone.utc)
    candidate = after + timedelta(seconds=max(schedule.every, 1))
    if schedule.kind != ScheduleKind.WEEKLY:
        return candidate.astimezone(dt_timezone.utc)
    return _next_in_window(schedule, candidate, tz).astimezone(dt_timezone.utc)


def _in_window(schedule: Schedule, local: datetime) -> bool:
    return local.weekday() in schedule.weekdays and schedule.start_hour <= local.hour < schedule.end_hour


def _next_in_window(schedule: Schedule, candidate: datetime, tz: ZoneInfo) -> datetime:
    local = candidate.astimezone(tz)
    if _in_window(schedule, local):
        return candidate
    # The next window opening: today's start if still ahead, else a following chosen day.
    day = local.date()
    for offset in range(0, 8):
        d = day + timedelta(days=offset)
        if d.weekday() not in schedule.weekdays:
            continue
        start = datetime(d.year, d.month, d.day, schedule.start_hour, tzinfo=tz)
        # A start hour that does not exist (DST gap) resolves through UTC round-tripping.
        start = start.astimezone(dt_timezone.utc).astimezone(tz)
        if start >= local:
            return start
        end = datetime(d.year, d.month, d.day, 0, tzinfo=tz) + timedelta(hours=schedule.end_hour)
        if local < end:  # inside the day's window already (covered above) — defensive
            return local
    return candidate  # unreachable with at least one weekday


def describe(*, schedule: Schedule) -> str:
    """A one-line, human description for the admin."""
    if schedule.kind == ScheduleKind.CRON:
        text = f"cron '{schedule.cron}'"
    else:
        text = f"every {_duration(schedule.every)}"
        if schedule.kind == ScheduleKind.WEEKLY:
            days = ", ".join(WEEKDAY_NAMES[d] for d in sorted(schedule.weekdays))
            text += f" on {days} from {schedule.start_hour:02d}:00 to {schedule.end_hour:02d}:00"
    return f"{text} ({schedule.timezone})"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        n = seconds // 3600
        return f"{n} hour{'s' if n != 1 else ''}"
    if seconds % 60 == 0:
        n = seconds // 60
        return f"{n} minute{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def reschedule(*, connection: InboundConnection, after: datetime | None = None) -> datetime | None:
    """Compute and store next_poll_at (None for a disabled connection)."""
    when = None
    if connection.enabled:
        try:
            when = next_run(schedule=Schedule.of(connection), after=after)
        except Exception:
            when = None  # an invalid schedule never polls; the admin shows why
    InboundConnection.objects.filter(pk=connection.pk).update(next_poll_at=when)
    connection.next_poll_at = when
    return when
