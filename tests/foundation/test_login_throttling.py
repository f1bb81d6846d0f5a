"""Password guessing is throttled on both sign-in pages (django-axes): a lock-out per user
name and per address after LOGIN_FAILURE_LIMIT wrong passwords, logged, visible to an admin
and lifted by one."""
from __future__ import annotations

import logging

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

LOGIN_PAGES = ["/admin/login/", "/messages/login/"]


@pytest.fixture
def users(django_user_model):
    staff = django_user_model.objects.create_user("carol", password="right-pw-123", is_staff=True)
    reader = django_user_model.objects.create_user("dave", password="right-pw-456")
    root = django_user_model.objects.create_superuser("root", password="root-pw-789")
    return {"staff": staff, "reader": reader, "root": root}


def _post(client: Client, page: str, username: str, password: str, ip: str = "203.0.113.7"):
    return client.post(page, {"username": username, "password": password, "next": "/"}, REMOTE_ADDR=ip)


def _wrong_times(client, page, username, n, ip="203.0.113.7"):
    for i in range(n):
        response = _post(client, page, username, f"wrong-{i}", ip)
        assert response.status_code == 200, (i, response.status_code)  # the form again, with its error


@pytest.mark.smoke
@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_locked_out_after_the_limit_even_with_the_right_password(users, page, caplog):
    username = "carol" if page.startswith("/admin") else "dave"
    password = "right-pw-123" if username == "carol" else "right-pw-456"
    client = Client()
    with caplog.at_level(logging.WARNING, logger="axes"):
        _wrong_times(client, page, username, settings.AXES_FAILURE_LIMIT - 1)
        locked = _post(client, page, username, "wrong-last")
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content and b"Content-Security-Policy" not in locked.content
    assert "Content-Security-Policy" in locked.headers
    right = _post(client, page, username, password)
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    assert any("locking out" in r.getMessage().lower() and "203.0.113.7" in r.getMessage() for r in caplog.records)
    assert "wrong-last" not in caplog.text and password not in caplog.text  # passwords never logged
    assert f'username: "{username}"' not in caplog.text


def test_lock_per_user_name_from_any_address(users):
    client = Client()
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        _post(client, "/messages/login/", "dave", "wrong", ip=f"198.51.100.{i + 1}")
    assert _post(client, "/messages/login/", "dave", "wrong", ip="198.51.100.99").status_code == 429
    assert _post(client, "/messages/login/", "dave", "right-pw-456", ip="192.0.2.50").status_code == 429


def test_lock_per_address_across_user_names(users):
    client = Client()
    for i in range(settings.AXES_FAILURE_LIMIT):
        _post(client, "/admin/login/", f"guess-{i}", "wrong", ip="192.0.2.66")
    assert _post(client, "/admin/login/", "carol", "right-pw-123", ip="192.0.2.66").status_code == 429
    ok = _post(Client(), "/admin/login/", "carol", "right-pw-123", ip="192.0.2.67")
    assert ok.status_code == 302  # another address is not affected


def test_an_admin_sees_and_lifts_the_lock(users):
    client = Client()
    _wrong_times(client, "/messages/login/", "dave", settings.AXES_FAILURE_LIMIT - 1)
    assert _post(client, "/messages/login/", "dave", "x").status_code == 429
    admin = Client()
    admin.force_login(users["root"])
    listing = admin.get(reverse("admin:axes_accessattempt_changelist"))
    assert listing.status_code == 200 and b"dave" in listing.content
    attempt = AccessAttempt.objects.get(username="dave")
    confirm = admin.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})
    assert confirm.status_code == 302 and not AccessAttempt.objects.filter(username="dave").exists()
    assert _post(client, "/messages/login/", "dave", "right-pw-456").status_code == 302


def test_the_reset_command_lifts_the_lock(users):
    client = Client()
    _wrong_times(client, "/admin/login/", "carol", settings.AXES_FAILURE_LIMIT - 1)
    assert _post(client, "/admin/login/", "carol", "x").status_code == 429
    call_command("axes_reset_username", "carol")
    assert _post(client, "/admin/login/", "carol", "right-pw-123").status_code == 302


def test_a_successful_sign_in_resets_the_count(users):
    client = Client()
    _wrong_times(client, "/messages/login/", "dave", settings.AXES_FAILURE_LIMIT - 1)
    assert _post(client, "/messages/login/", "dave", "right-pw-456").status_code == 302
    _wrong_times(Client(), "/messages/login/", "dave", settings.AXES_FAILURE_LIMIT - 1)  # counted from zero again


def test_authenticate_without_a_request_is_not_throttled_nor_broken(users):
    from django.contrib.auth import authenticate

    assert authenticate(username="dave", password="right-pw-456") == users["reader"]  # e.g. a command
    assert Client().login(username="dave", password="right-pw-456")  # the test client's login()
