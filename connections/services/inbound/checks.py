"""Checks of an inbound connection's settings for the admin and the config file: what
cannot work (validation_errors). What works but surprises is in setup.warnings; finding a
connection by tenant and name is access.lookup.find_connection."""
from __future__ import annotations

from ...errors import TenantMailError
from ...models import InboundConnection, PostProcessing, Protocol, Selection
from . import schedule


POP3_MODES = (PostProcessing.DELETE, PostProcessing.KEEP)


def validation_errors(connection: InboundConnection) -> dict[str, str]:
    """Field -> message for settings that cannot work (shown on the admin form)."""
    errors: dict[str, str] = {}
    if connection.protocol == Protocol.POP3 and connection.post_processing not in POP3_MODES:
        errors["post_processing"] = "POP3 can only delete mails or keep them on the server (remembered by UIDL)."
    if connection.protocol == Protocol.IMAP:
        if not (connection.folder or "").strip():
            errors["folder"] = "Name the IMAP folder to poll (usually INBOX)."
        if connection.post_processing in (PostProcessing.MOVE, PostProcessing.MOVE_AND_MARK_READ):
            archive = (connection.archive_folder or "").strip()
            if not archive:
                errors["archive_folder"] = "Moving needs an archive folder (it is created if missing)."
            elif archive == (connection.folder or "").strip():
                errors["archive_folder"] = "The archive folder must differ from the polled folder."
    if connection.max_messages < 1:
        errors["max_messages"] = "Fetch at least one message per poll."
    if connection.lock_timeout < 60:
        errors["lock_timeout"] = "Use at least 60 seconds: a poll that outlives its lock could run twice."
    try:
        schedule.validate(schedule=schedule.Schedule.of(connection))
    except TenantMailError as exc:
        field_name = "schedule_cron" if connection.schedule_kind == "cron" else "schedule_kind"
        if "time zone" in exc.message:
            field_name = "timezone"
        elif "interval" in exc.message:
            field_name = "schedule_every"
        elif "hours" in exc.message:
            field_name = "schedule_start_hour"
        elif "weekday" in exc.message.lower():
            field_name = "schedule_weekdays"
        errors[field_name] = str(exc)
    return errors
