"""`manage.py ensure_admin`: the first superuser for ./scripts/run, created once."""
from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command


def run(monkeypatch, **variables: str) -> str:
    for name in ("TENANTMAIL_ADMIN_USER", "TENANTMAIL_ADMIN_EMAIL", "TENANTMAIL_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


@pytest.mark.smoke
@pytest.mark.django_db
def test_generates_a_password_and_prints_it_once(monkeypatch):
    output = run(monkeypatch)
    password = re.search(r"password:\s+(\S+)", output).group(1)
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.is_staff and user.check_password(password)
    assert len(password) >= 20
    again = run(monkeypatch)
    assert "already exists" in again and password not in again
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_name_and_password_from_the_environment(monkeypatch):
    output = run(monkeypatch, TENANTMAIL_ADMIN_USER="ops", TENANTMAIL_ADMIN_PASSWORD="Chosen-pw-314",
                 TENANTMAIL_ADMIN_EMAIL="ops@example.test")
    assert "Chosen-pw-314" not in output
    user = get_user_model().objects.get(username="ops")
    assert user.is_superuser and user.email == "ops@example.test" and user.check_password("Chosen-pw-314")


@pytest.mark.django_db
def test_existing_superuser_is_left_alone(monkeypatch):
    get_user_model().objects.create_superuser("boss", password="x-1234567")
    run(monkeypatch, TENANTMAIL_ADMIN_PASSWORD="other-pw-99")
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["boss"]


@pytest.mark.django_db
def test_does_not_promote_a_plain_user_of_that_name(monkeypatch):
    get_user_model().objects.create_user("admin", password="x-1234567")
    with pytest.raises(CommandError, match="TENANTMAIL_ADMIN_USER"):
        run(monkeypatch)
    assert not get_user_model().objects.get(username="admin").is_superuser
