"""Inbound connections (the mail sender adapter): IMAP/POP3 polls."""
from __future__ import annotations

from django.db import models

from .base import ConnectionBase, Protocol
from .tenancy import TenantOwned


class Selection(models.TextChoices):
    UNREAD = "unread", "Only unread"
    ALL = "all", "All"


class PostProcessing(models.TextChoices):
    MARK_READ = "mark_read", "Mark as read"
    DELETE = "delete", "Delete"
    MOVE = "move", "Move to archive folder"
    MOVE_AND_MARK_READ = "move_and_mark_read", "Archive and mark as read"
    KEEP = "keep", "Keep unchanged"


class ScheduleKind(models.TextChoices):
    INTERVAL = "interval", "Every N seconds"
    WEEKLY = "weekly", "On weekdays between hours"
    CRON = "cron", "Cron expression"


class InboundConnection(ConnectionBase):
    protocol = models.CharField(
        max_length=8, choices=[(Protocol.IMAP, "IMAP"), (Protocol.POP3, "POP3")], default=Protocol.IMAP
    )
    folder = models.CharField("IMAP folder", max_length=255, default="INBOX")
    selection = models.CharField(max_length=8, choices=Selection.choices, default=Selection.UNREAD)
    max_messages = models.PositiveIntegerField("max messages per poll", default=100)
    max_message_size = models.PositiveBigIntegerField(
        "max message size (bytes)", default=100 * 1024 * 1024,
        help_text="A larger mail is recorded with its headers and marked, never dropped.",
    )
    post_processing = models.CharField(max_length=24, choices=PostProcessing.choices, default=PostProcessing.MARK_READ)
    archive_folder = models.CharField(max_length=255, blank=True)
    push = models.BooleanField(
        "push (IMAP IDLE)", default=False,
        help_text="Poll as soon as the server reports new mail (run_idle); the schedule stays the fallback.",
    )
    # Schedule.
    schedule_kind = models.CharField(max_length=12, choices=ScheduleKind.choices, default=ScheduleKind.INTERVAL)
    schedule_every = models.PositiveIntegerField("every (seconds)", default=300)
    schedule_weekdays = models.CharField(
        max_length=20, blank=True, default="0,1,2,3,4", help_text="Comma-separated, 0 = Monday."
    )
    schedule_start_hour = models.PositiveSmallIntegerField(default=0)
    schedule_end_hour = models.PositiveSmallIntegerField(default=24)
    schedule_cron = models.CharField(max_length=120, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    lock_timeout = models.PositiveIntegerField("lock timeout (seconds)", default=1800)
    # Poll state.
    next_poll_at = models.DateTimeField(null=True, blank=True)
    last_poll_at = models.DateTimeField(null=True, blank=True)
    last_poll_ok = models.BooleanField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)
    # When the dispatcher claimed it, the time it was due (its next_poll_at then): the poll's
    # dispatch lag is measured from it (monitoring/lag.py).
    dispatched_due_at = models.DateTimeField(null=True, blank=True, editable=False)
    # IMAP: the folder's UIDVALIDITY at the last poll. A change means the server renumbered
    # the folder; until the re-sync is done, new mails are matched to stored ones by
    # Message-ID + content hash instead of being stored again.
    imap_uidvalidity = models.BigIntegerField("IMAP UIDVALIDITY", null=True, blank=True)
    imap_resync = models.BooleanField("IMAP re-sync in progress", default=False)
    # IMAP, selection "all": every UID below imap_uid_next in the folder named by
    # imap_uid_scope (server, user, folder, UIDVALIDITY) is stored already, so a poll asks
    # the server only for UIDs from there on (new mails always get higher UIDs).
    imap_uid_next = models.BigIntegerField("IMAP next unseen UID", null=True, blank=True, editable=False)
    imap_uid_scope = models.CharField(max_length=64, blank=True, default="", editable=False)
    # Retention (services/messages/retention.py): stored mail older than this loses its bodies,
    # attachments and raw file; the row stays so the mail is never fetched again.
    keep_days = models.PositiveIntegerField(
        "keep stored mail (days)", null=True, blank=True,
        help_text="Older stored mail loses bodies, attachments and raw file. Empty: keep forever.",
    )

    class Meta:
        ordering = ["tenant__name", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_inbound_tenant_name")]
        indexes = [models.Index(fields=["enabled", "next_poll_at"], name="inbound_due_idx")]


    def __str__(self) -> str:
        return self.name

    @property
    def in_backoff(self) -> bool:
        from django.utils import timezone

        return bool(self.backoff_until and self.backoff_until > timezone.now())


class MailboxLock(models.Model):
    """At most one poll per mailbox (host + user + folder) across all workers.

    Taken with a short transaction (unique key); an expired lock (a killed worker) is taken
    over; the holder's token is required to extend or release it.
    """

    key = models.CharField(max_length=255, unique=True)
    token = models.CharField(max_length=64)
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    holder = models.CharField(max_length=255, blank=True, help_text="host:pid of the poller")

    def __str__(self) -> str:
        return self.key


class PollOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    PARTIAL = "partial", "Partial (some mails failed)"
    FAILED = "failed", "Failed"
    LOCKED = "locked", "Skipped: mailbox locked"


class PollRun(TenantOwned):
    connection = models.ForeignKey(InboundConnection, on_delete=models.CASCADE, related_name="poll_runs")
    trigger = models.CharField(max_length=16, default="schedule")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=PollOutcome.choices, default=PollOutcome.RUNNING)
    fetched = models.PositiveIntegerField(default=0)
    stored = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Mails stored but too large to download whole (headers only, marked oversized).
    oversized = models.PositiveIntegerField(default=0)
    # Post-processing completed for mails stored by an earlier, interrupted poll.
    recovered = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["connection", "-started_at"], name="pollrun_conn_idx"),
            models.Index(fields=["started_at"], name="pollrun_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.connection} @ {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"
