"""TenantMail settings, read from the environment or a `.env` file (see `.env.example`)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import environ
from kombu import Queue as KombuQueue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TENANTMAIL_VAR_DIR", BASE_DIR / "var")).resolve()

env = environ.Env()
# Variables already in the environment win over the file.
_env_file = os.environ.get("TENANTMAIL_ENV_FILE", str(BASE_DIR / ".env"))
if os.path.isfile(_env_file):
    environ.Env.read_env(_env_file)


def _stop(sentence: str) -> None:
    """End start-up with one clear sentence instead of a traceback."""
    sys.stderr.write(f"TenantMail cannot start: {sentence}\n")
    raise SystemExit(1)


def _raw(name: str) -> str:
    # Read secrets verbatim: django-environ would treat a leading "$" as a
    # reference to another variable, and generated keys can start with "$".
    return os.environ.get(name, "").strip()


SECRET_KEY = _raw("SECRET_KEY")
if not SECRET_KEY:
    _stop("SECRET_KEY is not set; put it in the environment or in .env (see .env.example).")

FERNET_KEYS = [k.strip() for k in _raw("FERNET_KEYS").split(",") if k.strip()]
if not FERNET_KEYS:
    _stop(
        "FERNET_KEYS is not set; put one or more comma-separated keys, newest first, "
        "in the environment or in .env (see .env.example)."
    )
# The keys are used as given (they are Fernet keys, not passphrases).
FERNET_USE_HKDF = False
for _position, _key in enumerate(FERNET_KEYS, start=1):
    try:
        from cryptography.fernet import Fernet

        Fernet(_key)
    except (ValueError, TypeError):
        _stop(
            f"FERNET_KEYS entry {_position} is not a valid Fernet key (32 url-safe base64-encoded "
            "bytes); generate one with `python -c \"from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())\"`."
        )

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# TenantMail's own settings (POLL_*, INBOUND_*, OUTBOX_*, ALERT_*, WEBHOOK_*, TENANTMAIL_*, …):
# each declared once, with its default and meaning, in connections/conf.py; read here from
# the environment (see .env.example).
from connections.conf import from_environment  # noqa: E402

_tenantmail = from_environment(env)
globals().update(_tenantmail)

INSTALLED_APPS = [
    "tenantmail.admin_site.TenantMailAdminConfig",  # django.contrib.admin with TenantMail's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",  # sign-in throttling (docs/security.md)
    "csp",
    "rest_framework",
    "drf_spectacular",
    "connections.apps.ConnectionsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves static files (the admin's CSS/JS) from the web process itself, with
    # far-future caching of hashed names: no separate file server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tenantmail.urls"
WSGI_APPLICATION = "tenantmail.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'tenantmail.sqlite3'}"
    ),
}
# Connections are reused (a gunicorn worker's requests, a Celery worker's tasks): a new
# PostgreSQL connection per task cost the server a process start and its prepared statements
# (persistence.prepared) every 10 polls. The health check replaces one the server dropped.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=300))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker, beat) share the file: wait for locks
    # instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
if os.environ.get("TM_TEST_DB") and not DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Lets several test runs share one PostgreSQL server without colliding (SQLite
    # tests use an in-memory database anyway).
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TM_TEST_DB"]}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="") or "UTC"
USE_I18N = True
USE_TZ = True
# One compact date format across the admin ("2026-11-21 10:03").
FORMAT_MODULE_PATH = ["tenantmail.formats"]

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default="") or str(VAR_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # `manage.py collectstatic` (run by scripts/run) writes hashed, compressed copies.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# A template naming a file missing from the manifest falls back to the plain name
# instead of failing the page.
WHITENOISE_MANIFEST_STRICT = False
MEDIA_URL = "media/"
MEDIA_ROOT = env.str("MEDIA_ROOT", default="") or str(VAR_DIR / "media")

LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/messages/"

# --- Security: strict by default when DEBUG is off (`manage.py check --deploy`).
_secure = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_secure)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes inside the cluster speak HTTP
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_secure)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_secure)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if _secure else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_secure)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_secure)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Login throttling (django-axes) and a strict CSP for every page without its own (the
# admin; the message pages set theirs). docs/security.md.
import datetime as _dt  # noqa: E402

from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE  # noqa: E402

MIDDLEWARE += ["csp.middleware.CSPMiddleware", "axes.middleware.AxesMiddleware"]  # axes last
AUTHENTICATION_BACKENDS = ["connections.throttling.SignInThrottlingBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = _dt.timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: a user name, an address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "locked_out.html"
# The log names the address; the user name is masked there (a password typed into the user
# name field must not reach a log) and shown in the admin's Access attempts.
AXES_SENSITIVE_PARAMETERS = ["username"]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],  # an inline <script> needs nonce="{{ request.csp_nonce }}"
        "style-src": [SELF, UNSAFE_INLINE],  # style attributes; styles cannot run code
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [SELF],
    },
}

# --- Celery
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "filesystem://localhost/"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: an embedded broker that needs no server.
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # Exchange tables for broadcasts (worker remote control); kombu's default is
        # relative to the current directory.
        "control_folder": str(_broker_dir / "control"),
    }
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="tenantmail")
# One queue per kind of work, named after the default queue ("tenantmail.dispatch", …), so
# that beat's dispatch never waits behind thousands of polls (docs/queues.md). A worker
# started without -Q consumes all of them; production can give each its own workers.
TASK_QUEUE_KINDS = ("dispatch", "poll", "send", "index", "housekeeping")
TENANTMAIL_QUEUES = {kind: f"{CELERY_TASK_DEFAULT_QUEUE}.{kind}" for kind in TASK_QUEUE_KINDS}
CELERY_TASK_QUEUES = [
    KombuQueue(name, routing_key=name)
    for name in (CELERY_TASK_DEFAULT_QUEUE, *TENANTMAIL_QUEUES.values())
]
_TASK_KINDS = {
    "dispatch": ("dispatch_due_polls", "fan_out_polls", "dispatch_outbox", "watchdog_tick", "sweep_webhooks"),
    "poll": ("poll_connection", "poll_connections", "parse_stored_messages"),
    "send": ("send_outbox",),
    "index": ("index_messages_for_search",),
    "housekeeping": ("sweep_orphan_files", "prune_poll_history", "purge_messages"),
}
# Tasks not listed here run on the default queue.
CELERY_TASK_ROUTES = {
    f"connections.tasks.{task}": {"queue": TENANTMAIL_QUEUES[kind], "routing_key": TENANTMAIL_QUEUES[kind]}
    for kind, tasks in _TASK_KINDS.items() for task in tasks
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One beat entry for all polls and one for the outbox: each tick runs one query. (Also
# settings of their own: the outbox derives its stale-claim window from its interval.)
CELERY_BEAT_SCHEDULE = {
    "dispatch-due-polls": {
        "task": "connections.tasks.dispatch_due_polls",
        "schedule": _tenantmail["POLL_DISPATCH_INTERVAL"],
    },
    "dispatch-outbox": {
        "task": "connections.tasks.dispatch_outbox",
        "schedule": _tenantmail["OUTBOX_DISPATCH_INTERVAL"],
    },
    "index-messages-for-search": {
        "task": "connections.tasks.index_messages_for_search",
        "schedule": 60.0,
    },
    "sweep-orphan-files": {
        "task": "connections.tasks.sweep_orphan_files",
        "schedule": 86400.0,
    },
    "prune-poll-history": {
        "task": "connections.tasks.prune_poll_history",
        "schedule": 3600.0,
    },
    "sweep-webhooks": {"task": "connections.tasks.sweep_webhooks", "schedule": 60.0},
    "purge-messages": {"task": "connections.tasks.purge_messages", "schedule": 86400.0},
}
# Monitoring (docs/monitoring.md): beat's scheduler records its heartbeat; workers and beat
# record theirs and run the watchdog every WATCHDOG_INTERVAL; alert recipients and thresholds.
CELERY_BEAT_SCHEDULER = "connections.services.monitoring.heartbeats:HeartbeatScheduler"
CELERY_BEAT_SCHEDULE["watchdog"] = {"task": "connections.tasks.watchdog_tick", "schedule": _tenantmail["WATCHDOG_INTERVAL"]}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Django's mail settings
# How Django's send_mail() (password resets, admin error mails) sends: Django's SMTP backend
# (to localhost:25), or "connections.backends.TenantMailBackend" through a tenant's outbox.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
# Django's SMTP backend (system alerts, docs/monitoring.md): where it sends, and as whom.
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# Django's own default: TenantMailBackend replaces it with the connection's default From.
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webmaster@localhost")
# TENANTMAIL_BLOCKED_NETWORKS (connections/conf.py) must be CIDRs: checked at start-up.
for _network in filter(None, (n.strip() for n in _tenantmail["TENANTMAIL_BLOCKED_NETWORKS"].split(","))):
    try:
        import ipaddress

        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        _stop(f"TENANTMAIL_BLOCKED_NETWORKS: {_network!r} is not a network; give comma-separated CIDRs "
              "such as 169.254.0.0/16,10.0.0.0/8.")

# The API's rate limit (API_RATE_LIMIT) is counted in the cache: set CACHE_URL to a shared
# cache, e.g. redis://127.0.0.1:6379/1, when several web processes serve the API.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TenantMail API",
    "DESCRIPTION": "Stored mail, the outbox and connections of one tenant (see docs/api.md).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# Error reports (DEBUG pages, admin mails) hide secret-named locals in every frame.
DEFAULT_EXCEPTION_REPORTER_FILTER = "connections.services.setup.credentials.SecretSafeExceptionReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
