"""Settings from the environment and .env: start-up errors, secrets read verbatim,
defaults under var/, and `manage.py check --deploy` with production-like settings.

Each case starts a fresh process with a clean environment, as an operator would.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
FERNET_KEY = Fernet.generate_key().decode()
PRINT_SETTINGS = (
    "import json; from django.conf import settings as s; "
    "db = s.DATABASES['default']; "
    "print(json.dumps({'SECRET_KEY': s.SECRET_KEY, 'FERNET_KEYS': s.FERNET_KEYS, 'DEBUG': s.DEBUG, "
    "'ENGINE': db['ENGINE'], 'NAME': str(db['NAME']), 'BROKER': s.CELERY_BROKER_URL, "
    "'BROKER_OPTIONS': getattr(s, 'CELERY_BROKER_TRANSPORT_OPTIONS', {}), "
    "'MEDIA_ROOT': str(s.MEDIA_ROOT), 'TIME_ZONE': s.TIME_ZONE, "
    "'SECURE_SSL_REDIRECT': s.SECURE_SSL_REDIRECT}))"
)


def long_secret_key() -> str:
    return secrets.token_urlsafe(60)


def run_manage(tmp_path: Path, *args: str, env_file: str | None = None, **variables: str):
    """Run manage.py in a clean environment (no developer .env, no test settings)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "tenantmail.settings",
        "TENANTMAIL_ENV_FILE": env_file or str(tmp_path / "no.env"),
        "TENANTMAIL_VAR_DIR": str(tmp_path / "var"),
    }
    env.update(variables)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def load_settings(tmp_path: Path, env_file: str | None = None, **variables: str) -> dict:
    result = run_manage(tmp_path, "shell", "-c", PRINT_SETTINGS, env_file=env_file, **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_one_clear_sentence(result, *words: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = lines[0]
    assert line.startswith("TenantMail cannot start: ")
    for word in words:
        assert word in line
    return line


@pytest.mark.smoke
def test_missing_secret_key_stops_with_one_sentence(tmp_path):
    result = run_manage(tmp_path, "check", FERNET_KEYS=FERNET_KEY)
    assert_one_clear_sentence(result, "SECRET_KEY is not set")


def test_empty_secret_key_counts_as_missing(tmp_path):
    result = run_manage(tmp_path, "check", SECRET_KEY="   ", FERNET_KEYS=FERNET_KEY)
    assert_one_clear_sentence(result, "SECRET_KEY is not set")


@pytest.mark.smoke
def test_missing_fernet_keys_stops_with_one_sentence(tmp_path):
    result = run_manage(tmp_path, "check", SECRET_KEY=long_secret_key())
    assert_one_clear_sentence(result, "FERNET_KEYS is not set")


def test_invalid_fernet_key_names_its_position_and_not_its_value(tmp_path):
    bad = "not-a-fernet-key"
    result = run_manage(tmp_path, "check", SECRET_KEY=long_secret_key(), FERNET_KEYS=f"{FERNET_KEY},{bad}")
    line = assert_one_clear_sentence(result, "FERNET_KEYS entry 2", "not a valid Fernet key")
    assert bad not in line


def test_celery_worker_stops_with_the_same_sentence(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
        "TENANTMAIL_ENV_FILE": str(tmp_path / "no.env"), "TENANTMAIL_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": long_secret_key(),
    }
    celery = Path(sys.executable).with_name("celery")
    result = subprocess.run(
        [str(celery), "-A", "tenantmail", "worker", "--pool", "solo"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert_one_clear_sentence(result, "FERNET_KEYS is not set")


@pytest.mark.smoke
def test_secret_key_starting_with_dollar_is_read_verbatim(tmp_path):
    # django-environ would expand "$HOME…" as a reference to another variable.
    key = "$HOME" + long_secret_key()
    loaded = load_settings(tmp_path, SECRET_KEY=key, FERNET_KEYS=FERNET_KEY)
    assert loaded["SECRET_KEY"] == key


def test_secrets_from_env_file_are_read_verbatim(tmp_path):
    quoted = "$" + long_secret_key() + "#not-a-comment"
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment line\n"
        f"SECRET_KEY='{quoted}'\n"
        f"FERNET_KEYS= {new} , {old} ,\n"
        "DEBUG=false\n"
        "TIME_ZONE=Europe/Zurich\n"
    )
    loaded = load_settings(tmp_path, env_file=str(env_file))
    assert loaded["SECRET_KEY"] == quoted
    assert loaded["FERNET_KEYS"] == [new, old]  # spaces stripped, newest first kept
    assert loaded["TIME_ZONE"] == "Europe/Zurich"


def test_environment_wins_over_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"SECRET_KEY='from-file-{long_secret_key()}'\nFERNET_KEYS={FERNET_KEY}\n")
    key = "from-env-" + long_secret_key()
    loaded = load_settings(tmp_path, env_file=str(env_file), SECRET_KEY=key)
    assert loaded["SECRET_KEY"] == key


@pytest.mark.smoke
def test_defaults_are_embedded_under_var(tmp_path):
    loaded = load_settings(tmp_path, SECRET_KEY=long_secret_key(), FERNET_KEYS=FERNET_KEY)
    var = tmp_path / "var"
    assert loaded["DEBUG"] is False
    assert loaded["ENGINE"] == "django.db.backends.sqlite3"
    assert loaded["NAME"] == str(var / "tenantmail.sqlite3")
    assert loaded["BROKER"].startswith("filesystem://")
    folders = loaded["BROKER_OPTIONS"]
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        assert Path(folders[key]).is_absolute() and Path(folders[key]).is_relative_to(var), key
        assert Path(folders[key]).is_dir()
    assert loaded["MEDIA_ROOT"] == str(var / "media")
    assert loaded["SECURE_SSL_REDIRECT"] is True  # DEBUG off: secure by default


def test_postgres_and_redis_urls_are_used(tmp_path):
    loaded = load_settings(
        tmp_path, SECRET_KEY=long_secret_key(), FERNET_KEYS=FERNET_KEY,
        DATABASE_URL="postgres://tm:pw@db.example:5433/tenantmail", CELERY_BROKER_URL="redis://cache:6379/2",
    )
    assert loaded["ENGINE"] == "django.db.backends.postgresql"
    assert loaded["NAME"] == "tenantmail"
    assert loaded["BROKER"] == "redis://cache:6379/2"
    assert loaded["BROKER_OPTIONS"] == {}


@pytest.mark.smoke
def test_check_deploy_is_clean_with_production_like_settings(tmp_path):
    result = run_manage(
        tmp_path, "check", "--deploy", "--fail-level", "WARNING",
        SECRET_KEY="$" + long_secret_key(), FERNET_KEYS=FERNET_KEY, DEBUG="false",
        ALLOWED_HOSTS="mail.example.com", DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_flags_a_plain_http_setup(tmp_path):
    # The same check is not a rubber stamp: switching the secure defaults off is reported.
    result = run_manage(
        tmp_path, "check", "--deploy", "--fail-level", "WARNING",
        SECRET_KEY=long_secret_key(), FERNET_KEYS=FERNET_KEY, DEBUG="false",
        SECURE_SSL_REDIRECT="false", SESSION_COOKIE_SECURE="false",
    )
    assert result.returncode != 0
    assert "security.W008" in result.stderr and "security.W012" in result.stderr


@pytest.mark.smoke
def test_env_example_documents_every_variable_the_settings_read():
    import re

    source = (ROOT / "tenantmail" / "settings.py").read_text()
    read = set(re.findall(r'(?:env\.\w+|_raw|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]+)"', source))
    read -= {"TM_TEST_DB"}  # the test suite's own
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    documented |= set(re.findall(r"^#\s+([A-Z][A-Z0-9_]+)\s{2,}", example, re.M))  # environment-only list
    assert read, "no variables found: the pattern is out of date"
    assert read - documented == set(), "add these to .env.example with an explanation"


def test_system_checks_pass_and_migrations_match_the_models(tmp_path):
    variables = {"SECRET_KEY": long_secret_key(), "FERNET_KEYS": FERNET_KEY, "DEBUG": "true"}
    check = run_manage(tmp_path, "check", "--fail-level", "WARNING", **variables)
    assert check.returncode == 0, check.stdout + check.stderr
    # A model change without its migration would break `migrate` in ./scripts/run.
    # (The app is named: without a migrations package Django would skip it silently.)
    pending = run_manage(tmp_path, "makemigrations", "connections", "--check", "--dry-run", **variables)
    assert pending.returncode == 0, "models changed without a migration:\n" + pending.stdout + pending.stderr
