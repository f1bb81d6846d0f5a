"""The `schedule:` key of an inbound connection: one key, several model fields
({every: N}, {cron: "..."} or {weekdays: [...], between: ["HH:00", "HH:00"], every: N})."""
from __future__ import annotations

import re
from typing import Any

from croniter import croniter

from ....models import InboundConnection, ScheduleKind
from .fields import model_default

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = model value (0 = Monday)
SCHEDULE_FIELDS = (
    "schedule_kind", "schedule_every", "schedule_weekdays", "schedule_start_hour",
    "schedule_end_hour", "schedule_cron",
)
KEYS = ("every", "cron", "weekdays", "between")


def default() -> dict[str, Any]:
    """The schedule of an entry without `schedule:`."""
    return {"schedule_kind": ScheduleKind.INTERVAL.value,
            "schedule_every": model_default(InboundConnection, "schedule_every")}


def validate(v, path: str, node: Any) -> dict[str, Any]:
    """Model schedule fields from {every}, {cron} or {weekdays, between[, every]}."""
    m = v.mapping(path, node, KEYS)
    if m is None:
        return {}
    if "cron" in m and ("every" in m or "weekdays" in m or "between" in m):
        v.err(path, "give either {cron: ...}, {every: N} or {weekdays: [...], between: [...], every: N}")
        return {}
    if "cron" not in m and "weekdays" not in m and "every" not in m:
        v.err(path, "expected {every: seconds}, {cron: \"...\"} or {weekdays: [...], between: [...]}")
        return {}
    out: dict[str, Any] = {}
    if "every" in m:
        every = m["every"]
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            v.err(f"{path}.every", f"expected a whole number of seconds >= 1, got {every!r}")
        else:
            out["schedule_every"] = every
    if "cron" in m:
        expr = m["cron"]
        if not isinstance(expr, str) or not croniter.is_valid(expr) or len(expr) > 120:
            v.err(f"{path}.cron", f"{expr!r} is not a valid cron expression (five fields, e.g. \"*/5 * * * *\")")
        else:
            out.update(schedule_kind=ScheduleKind.CRON.value, schedule_cron=expr)
        return out
    if "weekdays" in m or "between" in m:
        out.update(_weekly(v, path, m))
        if "every" not in m:
            out["schedule_every"] = model_default(InboundConnection, "schedule_every")
        return out
    out["schedule_kind"] = ScheduleKind.INTERVAL.value
    return out


def _weekly(v, path: str, m: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    days = m.get("weekdays", list(WEEKDAYS[:5]))
    if not isinstance(days, list) or not days or not all(d in WEEKDAYS for d in days):
        v.err(f"{path}.weekdays", f"expected a list of {', '.join(WEEKDAYS)}, got {days!r}")
    elif len(set(days)) != len(days):
        v.err(f"{path}.weekdays", "a day is given twice")
    else:
        out["schedule_weekdays"] = ",".join(str(WEEKDAYS.index(d)) for d in sorted(days, key=WEEKDAYS.index))
    between = m.get("between", ["00:00", "24:00"])
    if not isinstance(between, list) or len(between) != 2:
        v.err(f"{path}.between", f"expected [\"HH:00\", \"HH:00\"], got {between!r}")
    else:
        start, end = _parse_hour(between[0], end=False), _parse_hour(between[1], end=True)
        if start is None or end is None:
            v.err(f"{path}.between", f"expected whole hours as quoted strings like [\"08:00\", \"18:00\"], "
                  f"got {between!r}")
        elif start >= end:
            v.err(f"{path}.between", f"the start {between[0]} must be before the end {between[1]}")
        else:
            out.update(schedule_start_hour=start, schedule_end_hour=end)
    out["schedule_kind"] = ScheduleKind.WEEKLY.value
    return out


def _parse_hour(v: Any, *, end: bool) -> int | None:
    if not isinstance(v, str):
        return None
    m = re.fullmatch(r"(\d{1,2}):00", v.strip())
    if not m:
        return None
    hour = int(m.group(1))
    return hour if (1 if end else 0) <= hour <= (24 if end else 23) else None


def to_yaml(conn: InboundConnection) -> dict[str, Any]:
    """The `schedule:` value of a connection (or of a row about to be written)."""
    if conn.schedule_kind == ScheduleKind.CRON:
        return {"cron": conn.schedule_cron}
    if conn.schedule_kind == ScheduleKind.WEEKLY:
        days = [WEEKDAYS[int(d)] for d in conn.schedule_weekdays.split(",") if d.strip().isdigit()]
        return {
            "weekdays": days,
            "between": [f"{conn.schedule_start_hour:02d}:00", f"{conn.schedule_end_hour:02d}:00"],
            "every": conn.schedule_every,
        }
    return {"every": conn.schedule_every}
