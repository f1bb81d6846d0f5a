from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "connections"
    verbose_name = "Mail connections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Celery signal receivers: workers record their heartbeat (docs/monitoring.md).
        from .services.monitoring import heartbeats  # noqa: F401
        from .services.webhooks import connect_receivers

        connect_receivers()
