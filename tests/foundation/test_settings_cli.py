"""manage.py commands log at WARNING by default (their summary is printed already), the servers
keep INFO; EMAIL_BACKEND comes from the environment. Fresh processes, clean environments."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

from tests.foundation.test_settings import long_secret_key, run_manage

ROOT = Path(__file__).resolve().parents[2]
LOG_BOTH = (
    "import logging; log = logging.getLogger('connections.cli'); "
    "log.info('INFO-LINE'); log.warning('WARNING-LINE'); print('SUMMARY-LINE')"
)


def _keys() -> dict[str, str]:
    return {"SECRET_KEY": long_secret_key(), "FERNET_KEYS": Fernet.generate_key().decode()}


def test_a_command_prints_its_summary_without_info_log_lines(tmp_path):
    result = run_manage(tmp_path, "shell", "-c", LOG_BOTH, **_keys())
    assert result.returncode == 0, result.stderr
    assert "SUMMARY-LINE" in result.stdout
    assert "WARNING-LINE" in result.stderr and "INFO-LINE" not in result.stderr


def test_a_command_logs_info_when_log_level_is_set(tmp_path):
    result = run_manage(tmp_path, "shell", "-c", LOG_BOTH, LOG_LEVEL="INFO", **_keys())
    assert result.returncode == 0, result.stderr
    assert "INFO-LINE" in result.stderr and "WARNING-LINE" in result.stderr


def test_an_env_file_log_level_does_not_bring_back_the_duplicates(tmp_path):
    env_file = tmp_path / "copied.env"
    env_file.write_text("LOG_LEVEL=INFO\n")  # as copied from .env.example
    result = run_manage(tmp_path, "shell", "-c", LOG_BOTH, env_file=str(env_file), **_keys())
    assert result.returncode == 0, result.stderr
    assert "INFO-LINE" not in result.stderr and "WARNING-LINE" in result.stderr


def test_worker_beat_and_gunicorn_keep_info(tmp_path):
    # Celery and gunicorn load the settings without manage.py.
    code = (
        "import django, logging; django.setup(); "
        "from django.conf import settings; print(settings.LOGGING['root']['level'], logging.getLogger().level)"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "tenantmail.settings", "TENANTMAIL_ENV_FILE": str(tmp_path / "no.env"),
        "TENANTMAIL_VAR_DIR": str(tmp_path / "var"), **_keys(),
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["INFO", "20"]


PRINT_BACKEND = "from django.conf import settings; print(settings.EMAIL_BACKEND)"


def test_email_backend_defaults_to_django_smtp(tmp_path):
    result = run_manage(tmp_path, "shell", "-c", PRINT_BACKEND, **_keys())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "django.core.mail.backends.smtp.EmailBackend"


def test_email_backend_from_the_environment(tmp_path):
    result = run_manage(tmp_path, "shell", "-c", PRINT_BACKEND, EMAIL_BACKEND="connections.backends.TenantMailBackend",
                        TENANTMAIL_EMAIL_TENANT="acme", TENANTMAIL_EMAIL_CONNECTION="smtp-main", **_keys())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "connections.backends.TenantMailBackend"
