"""TenantMail's own settings in one place: each one declared once, with its default and meaning.

`tenantmail/settings.py` reads them from the environment with `from_environment(env)`;
code reads them through `conf.NAME`, which looks in Django's settings first (so
`override_settings` and a settings module of one's own work) and falls back to the
default declared here. Django's own settings (EMAIL_*, DEBUG, …) stay in settings.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MB = 1024 * 1024


@dataclass(frozen=True)
class Setting:
    default: Any
    doc: str


SETTINGS: dict[str, Setting] = {
    # --- Inbound (docs/inbound.md, docs/queues.md)
    "POLL_DISPATCH_INTERVAL": Setting(2.0, "seconds between beat's dispatch ticks for due polls"),
    "POLL_DISPATCH_FANOUT": Setting(200, "above this many due connections a tick hands ids out in chunks of this size"),
    "POLL_DISPATCH_CLAIM_SECONDS": Setting(1800, "how long a dispatched poll stays claimed before it may be dispatched again"),
    "POLL_DISPATCH_MAX": Setting(50000, "most connections dispatched per tick"),
    "POLL_TASK_BATCH": Setting(10, "scheduled polls per Celery task, run one after another (1: one task per poll)"),
    "POLL_HISTORY_RETENTION_DAYS": Setting(30, "poll history rows older than this are pruned"),
    "INBOUND_FSYNC": Setting("destructive", "when stored mail files are flushed to disk: destructive | always | never"),
    "INBOUND_PARSE_IN_MEMORY_MAX": Setting(8 * _MB, "mails above this size are parsed from the stored file"),
    "INBOUND_FETCH_BATCH": Setting(200, "mails per IMAP FETCH and per committed batch"),
    "INBOUND_FETCH_BATCH_BYTES": Setting(16 * _MB, "byte cap of one batch"),
    "INBOUND_STREAM_THRESHOLD": Setting(4 * _MB, "mails above this size are fetched in chunks to a spool file"),
    "INBOUND_PARSE_DURING_POLL": Setting(True, "parse during the poll (False: a task parses afterwards)"),
    "INBOUND_PREPARE_PROCESSES": Setting(2, "forked helper processes that parse and write files for large polls (0: none)"),
    "INBOUND_PREPARE_PROCESS_MIN": Setting(400, "a poll uses the helper processes from this many mails on"),
    # --- Outbox (docs/outbound.md)
    "OUTBOX_DISPATCH_INTERVAL": Setting(10.0, "seconds between beat's outbox dispatch ticks"),
    "OUTBOX_MAX_ATTEMPTS": Setting(5, "send attempts before a message fails"),
    "OUTBOX_RETRY_BASE_SECONDS": Setting(60.0, "first retry delay (doubles per attempt)"),
    "OUTBOX_RETRY_MAX_SECONDS": Setting(3600.0, "longest retry delay"),
    "OUTBOX_HOLD_SECONDS": Setting(300.0, "a connection is held this long after a connection problem"),
    "OUTBOX_STALE_AFTER_MINUTES": Setting(15.0, "a message in `sending` this long without progress is stale"),
    "OUTBOX_LEASE_SECONDS": Setting(60.0, "a sending worker's lease on its claimed messages"),
    "OUTBOX_SEND_TIME_BUDGET": Setting(120.0, "how long one send task keeps opening new SMTP sessions"),
    "OUTBOX_PARALLEL_SESSIONS": Setting(2, "SMTP sessions per connection at once"),
    # --- Monitoring (docs/monitoring.md)
    "MONITORING_HEARTBEAT_INTERVAL": Setting(10.0, "seconds between a worker's heartbeats"),
    "MONITORING_BACKGROUND": Setting(True, "workers and beat record heartbeats and run the watchdog"),
    "WATCHDOG_INTERVAL": Setting(60.0, "seconds between watchdog passes"),
    "ALERT_EMAIL_TO": Setting([], "system alert recipients"),
    "ALERT_WEBHOOK_URL": Setting("", "system alert webhook"),
    "ALERT_WEBHOOK_SECRET": Setting("", "its signing secret"),
    "ALERT_FAILING_AFTER": Setting(3, "failed polls/sends in a row before an alert"),
    "ALERT_REMIND_EVERY_HOURS": Setting(24.0, "an open alert is sent again this often"),
    "ALERT_QUEUE_DEPTH_MAX": Setting(1000, "queued tasks above this raise an alert"),
    "ALERT_QUEUE_OLDEST_MAX_SECONDS": Setting(300.0, "a task waiting longer than this raises an alert"),
    "ALERT_OUTBOX_QUEUED_MAX_MINUTES": Setting(60.0, "an outbox message queued longer raises an alert"),
    "ALERT_DISK_FREE_MIN_MB": Setting(1024.0, "free disk below this raises an alert"),
    "ALERT_CERT_EXPIRY_DAYS": Setting(14, "a server certificate expiring sooner raises an alert"),
    "METRICS_TOKEN": Setting("", "bearer token /metrics asks for (empty: open)"),
    "OPERATIONS_REFRESH_SECONDS": Setting(15, "the admin operations view reloads this often"),
    # --- Passing mail on (docs/webhooks.md, docs/api.md, docs/retention.md)
    "WEBHOOK_TIMEOUT_SECONDS": Setting(10.0, "webhook request timeout"),
    "WEBHOOK_MAX_ATTEMPTS": Setting(8, "attempts per delivery"),
    "WEBHOOK_RETRY_BASE_SECONDS": Setting(30.0, "first retry delay (doubles per attempt)"),
    "WEBHOOK_RETRY_MAX_SECONDS": Setting(3600.0, "longest retry delay"),
    "WEBHOOK_DISABLE_AFTER": Setting(50, "consecutive failed attempts that disable a webhook"),
    "WEBHOOK_RUN_SECONDS": Setting(60.0, "how long one delivery run goes on"),
    "WEBHOOK_POLL_GRACE_SECONDS": Setting(60.0, "deliveries of a connection wait while its poll runs (0: never)"),
    "WEBHOOK_LOG_RETENTION_DAYS": Setting(30, "delivered/failed deliveries older than this are purged"),
    "API_RATE_LIMIT": Setting("600/min", "API requests per token"),
    # --- Setup, security, the site
    "CONNECTIVITY_ADMIN_WAIT": Setting(20.0, "seconds the admin's Test connection waits for the result"),
    "TENANTMAIL_BLOCKED_NETWORKS": Setting(
        "169.254.0.0/16,fe80::/10,fd00:ec2::254/128", "CIDRs no connection, proxy or HTTP target may reach"
    ),
    "TENANTMAIL_BASE_URL": Setting("", "the app's public base URL (OAuth2 callback, links in webhooks)"),
    "TENANTMAIL_EMAIL_TENANT": Setting("", "tenant of the connection TenantMailBackend sends through"),
    "TENANTMAIL_EMAIL_CONNECTION": Setting("", "that outbound connection's name"),
    "TENANTMAIL_DISCOVERY_TIMEOUT": Setting(4.0, "seconds per autoconfig/autodiscover/SRV lookup"),
    "TENANTMAIL_DNS_NAMESERVERS": Setting([], "nameservers for discovery (empty: the system's)"),
}

# Where the base URL falls back to when none is set (links in webhook bodies, CLI output).
LOCAL_BASE_URL = "http://127.0.0.1:8000"


class _Conf:
    """`conf.NAME`: Django's setting if set, else the default declared above."""

    def __getattr__(self, name: str) -> Any:
        try:
            spec = SETTINGS[name]
        except KeyError:
            raise AttributeError(f"{name} is not a TenantMail setting (connections/conf.py)") from None
        from django.conf import settings

        return getattr(settings, name, spec.default)

    def base_url(self) -> str:
        return (str(self.TENANTMAIL_BASE_URL or "") or LOCAL_BASE_URL).rstrip("/")


conf = _Conf()


def from_environment(env: Any) -> dict[str, Any]:
    """Every setting read from the environment (django-environ's Env), typed by its default."""
    readers = {bool: env.bool, int: env.int, float: env.float, str: env.str, list: env.list}
    return {name: readers[type(spec.default)](name, default=spec.default) for name, spec in SETTINGS.items()}
