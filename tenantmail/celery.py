"""The Celery application: `celery -A tenantmail worker` / `celery -A tenantmail beat`."""
import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantmail.settings")

app = Celery("tenantmail")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Beat's dispatch ticks run every few seconds; at INFO each would log three lines (sent,
# received, succeeded) even when nothing was due, burying the polls and sends an operator
# looks for. Each process logs its first tick of each kind (proof that beat reaches the
# worker), then only ticks that dispatched something or failed; LOG_LEVEL=DEBUG logs all.
TICK_TASKS = frozenset({
    "connections.tasks.dispatch_due_polls", "connections.tasks.dispatch_outbox", "connections.tasks.watchdog_tick",
    "connections.tasks.sweep_webhooks", "connections.tasks.index_messages_for_search",
})
TICK_ENTRIES = frozenset({"dispatch-due-polls", "dispatch-outbox", "watchdog", "sweep-webhooks",
                          "index-messages-for-search"})


class QuietTicks(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
            return True
        args = record.args
        if isinstance(args, dict) and args.get("name") in TICK_TASKS:
            # "received" (no return value yet), or "succeeded" having dispatched nothing.
            if args.get("return_value", "0") not in ("0", 0, "False", False):
                return True
            key = (record.name, args["name"])
        elif isinstance(args, tuple) and args and args[0] in TICK_ENTRIES:
            key = (record.name, args[0])  # beat: "Scheduler: Sending due task dispatch-… (…)"
        else:
            return True
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


for _name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
    logging.getLogger(_name).addFilter(QuietTicks())
