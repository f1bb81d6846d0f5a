"""One way to show a moment in the admin: checklist, connection lists, outbox records.

`short(dt)` -> "2026-11-21 09:37" in the current time zone (TIME_ZONE, or the one
activated): compact enough for list columns, unambiguous, and without the trailing period
of Django's "Nov. 21, 2026, 9:37 a.m." that doubled up at the end of a sentence.
"""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime

FORMAT = "%Y-%m-%d %H:%M"
FORMAT_SECONDS = "%Y-%m-%d %H:%M:%S"


def short(value: datetime | str | None, *, seconds: bool = False, empty: str = "never") -> str:
    """`value` (aware datetime, or an ISO 8601 string as stored in JSON logs) as local time."""
    if value is None or value == "":
        return empty
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            return value  # not a timestamp: show it as it is rather than lose it
        value = parsed
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime(FORMAT_SECONDS if seconds else FORMAT)


def compact(value: datetime | str | None, *, empty: str = "never") -> str:
    """For list columns: "11-21 09:37" this year, "2025-11-21" before (the full moment goes
    in the cell's title, from `short`)."""
    if value is None or value == "":
        return empty
    full = short(value)
    if len(full) != 16:  # not a timestamp
        return full
    this_year = timezone.localtime().strftime("%Y")
    return full[5:] if full.startswith(this_year) else full[:10]
