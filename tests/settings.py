"""Settings for the test suite: real PostgreSQL and Redis unless told otherwise."""
import os
import tempfile
import uuid

os.environ["TENANTMAIL_ENV_FILE"] = "/nonexistent"  # never read a developer's .env
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("FERNET_KEYS", "ob-8dVjrl0aKu7CBUa_Q2lpaZJU4tTJ1CzCQ7P9gjuw=")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tenantmail")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
# A connection per request or task, as before persistent connections became the default: the
# test database is dropped at the end, and a thread's kept connection would hold it open.
os.environ.setdefault("CONN_MAX_AGE", "0")
_run_dir = tempfile.mkdtemp(prefix="tenantmail-tests-")
os.environ.setdefault("TENANTMAIL_VAR_DIR", _run_dir)
# Each run gets its own queue so that concurrent runs never take each other's tasks.
os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"tenantmail-test-{uuid.uuid4().hex[:8]}")

from tenantmail.settings import *  # noqa: E402,F401,F403

MEDIA_ROOT = os.path.join(_run_dir, "media")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Static files straight from the apps (no collectstatic in tests), served by WhiteNoise
# for browser tests.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
STATIC_ROOT = os.path.join(_run_dir, "static")
os.makedirs(STATIC_ROOT, exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# The heartbeat/watchdog thread only in the real beat/worker processes that tests start.
MONITORING_BACKGROUND = os.environ.get("MONITORING_BACKGROUND", "false").lower() == "true"
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, as in production (WAL, a busy timeout), not Django's shared-cache in-memory test
    # database: there one thread's read (the outbox's MIME loader had its own thread then) made
    # another's write fail at once with "database table is locked" instead of waiting.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(_run_dir, "test.sqlite3")}  # noqa: F405
