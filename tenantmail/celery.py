"""The Celery application: `celery -A tenantmail worker` / `celery -A tenantmail beat`."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantmail.settings")

app = Celery("tenantmail")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
