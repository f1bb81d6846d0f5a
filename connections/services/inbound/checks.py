"""Checks of an inbound connection's settings for the admin and the config file: what
cannot work (validation_errors) and what works but surprises (warnings_for); finding a
connection by tenant and name."""
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


def warnings_for(connection: InboundConnection) -> list[str]:
    """Combinations that work but re-process mail or surprise operators."""
    out = []
    if connection.protocol == Protocol.IMAP:
        if connection.selection == Selection.ALL and connection.post_processing == PostProcessing.MARK_READ:
            out.append(
                "Mark as read with selection All re-processes mail on every poll: read mails stay in the "
                "folder and are searched again each time (already stored ones are skipped by UID, but the "
                "work grows with the folder). Choose 'Only unread', or Move/Delete."
            )
        if connection.selection == Selection.ALL and connection.post_processing == PostProcessing.KEEP:
            out.append(
                "Keep unchanged with selection All: every poll lists the whole folder and skips what is "
                "stored. Fine for small folders; large ones are better moved to an archive folder."
            )
        if connection.selection == Selection.UNREAD and connection.post_processing == PostProcessing.KEEP:
            out.append(
                "Keep unchanged with Only unread: mails a person reads in their mail program before the "
                "poll are never fetched."
            )
    if connection.protocol == Protocol.POP3 and connection.post_processing == PostProcessing.KEEP:
        out.append("POP3 Keep on server: the mailbox grows; every poll lists all UIDLs.")
    if connection.max_message_size < 1024 * 1024:
        out.append("The max message size is under 1 MB: most mails with attachments will be stored as headers only.")
    return out


def find_connection(*, tenant_slug: str, name: str) -> InboundConnection:
    """The inbound connection `name` of the tenant `tenant_slug` (clear error if absent)."""
    from ...errors import NotFound, no_tenant
    from ...models import Tenant

    tenant = Tenant.objects.filter(slug=tenant_slug).first()
    if tenant is None:
        raise NotFound(no_tenant(tenant_slug))
    connection = InboundConnection.objects.filter(tenant=tenant, name=name).first()
    if connection is None:
        names = list(InboundConnection.objects.filter(tenant=tenant).values_list("name", flat=True)[:20])
        raise NotFound(
            f"Tenant '{tenant_slug}' has no inbound connection named '{name}'.",
            hint=("its inbound connections: " + ", ".join(names)) if names else "it has no inbound connections",
        )
    return connection
