from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "connections"
    verbose_name = "Mail connections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .services.webhooks import connect_receivers

        connect_receivers()
