"""connections/conf.py: every TenantMail setting declared once, read from the environment."""
from __future__ import annotations

import re
from pathlib import Path

import environ
import pytest
from django.test import override_settings

from connections.conf import SETTINGS, conf, from_environment

ROOT = Path(__file__).resolve().parent.parent


def test_reads_django_settings_first_then_the_declared_default():
    with override_settings(OUTBOX_MAX_ATTEMPTS=9):
        assert conf.OUTBOX_MAX_ATTEMPTS == 9
    from django.conf import settings

    del_name = "TENANTMAIL_DISCOVERY_TIMEOUT"
    with override_settings():
        delattr(settings, del_name)
        assert conf.TENANTMAIL_DISCOVERY_TIMEOUT == SETTINGS[del_name].default


def test_unknown_name_is_a_clear_error():
    with pytest.raises(AttributeError, match="not a TenantMail setting"):
        conf.NO_SUCH_SETTING  # noqa: B018


def test_environment_values_are_typed_by_the_default(monkeypatch):
    monkeypatch.setenv("POLL_TASK_BATCH", "7")
    monkeypatch.setenv("INBOUND_PARSE_DURING_POLL", "false")
    monkeypatch.setenv("ALERT_EMAIL_TO", "a@example.com,b@example.com")
    values = from_environment(environ.Env())
    assert values["POLL_TASK_BATCH"] == 7
    assert values["INBOUND_PARSE_DURING_POLL"] is False
    assert values["ALERT_EMAIL_TO"] == ["a@example.com", "b@example.com"]
    assert set(values) == set(SETTINGS)


def test_base_url_falls_back_to_the_local_server():
    with override_settings(TENANTMAIL_BASE_URL=""):
        assert conf.base_url() == "http://127.0.0.1:8000"
    with override_settings(TENANTMAIL_BASE_URL="https://mail.example/"):
        assert conf.base_url() == "https://mail.example"


def test_every_setting_is_in_env_example():
    text = (ROOT / ".env.example").read_text()
    missing = [name for name in SETTINGS if not re.search(rf"^#? ?{name}=", text, re.M)]
    assert missing == []


def test_no_default_is_written_twice():
    """Code reads TenantMail settings through conf, never getattr(settings, NAME, default)."""
    offenders = []
    for path in (ROOT / "connections").rglob("*.py"):
        for name in re.findall(r'getattr\(settings, "([A-Z_]+)"', path.read_text()):
            if name in SETTINGS:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []
