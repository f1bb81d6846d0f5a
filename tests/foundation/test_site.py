"""TenantMail's own admin site (name, model order), the favicon, and quiet beat ticks."""
from __future__ import annotations

import logging

import pytest
from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS
from django.contrib import admin
from django.contrib.auth import get_user_model

from tenantmail.admin_site import MODEL_ORDER, TenantMailAdminSite
from tenantmail.celery import QuietTicks


@pytest.mark.django_db
@pytest.mark.smoke
def test_admin_is_tenantmail_with_models_in_setup_order(client):
    assert isinstance(admin.site, TenantMailAdminSite)
    user = get_user_model().objects.create_superuser("root", "root@example.test", "pw-Root-1")
    client.force_login(user)
    page = client.get("/admin/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "<title>Tenants, credentials and mail connections | TenantMail admin</title>" in html
    assert "Django administration" not in html
    apps = page.context["app_list"]
    assert apps[0]["app_label"] == "connections"  # the product before Django's users and groups
    names = [m["object_name"] for m in apps[0]["models"]]
    assert names == [n for n in MODEL_ORDER if n in names]
    assert names[:3] == ["Tenant", "Membership", "UserCredential"]
    # No nav sidebar: the wide connection lists get the whole width.
    listing = client.get("/admin/connections/tenant/").content.decode()
    assert 'id="nav-sidebar"' not in listing and "Tenants" in listing


@pytest.mark.smoke
def test_favicon_is_an_icon_not_a_404(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")


def _record(logger: str, msg: str, args, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(logger, level, __file__, 1, msg, args, None)


def _received(name: str) -> logging.LogRecord:
    return _record("celery.worker.strategy", LOG_RECEIVED,
                   ({"name": name, "id": "x", "args": "()", "kwargs": "{}", "eta": None},))


def _succeeded(name: str, value: str) -> logging.LogRecord:
    return _record("celery.app.trace", LOG_SUCCESS,
                   ({"name": name, "id": "x", "runtime": 0.01, "return_value": value},))


@pytest.mark.smoke
def test_idle_beat_ticks_are_logged_once_then_only_when_they_dispatch(monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "level", logging.INFO)
    quiet = QuietTicks()
    tick = "connections.tasks.dispatch_due_polls"
    sent = _record("celery.beat", "Scheduler: Sending due task %s (%s)", ("dispatch-due-polls", tick))
    assert quiet.filter(sent) and not quiet.filter(sent)  # the first tick shows that beat works
    assert quiet.filter(_received(tick)) and not quiet.filter(_received(tick))
    assert quiet.filter(_succeeded(tick, "0")) and not quiet.filter(_succeeded(tick, "0"))
    assert quiet.filter(_succeeded(tick, "3"))  # it dispatched polls: always shown
    # The other periodic ticks alike (a watchdog pass that did nothing returns False).
    watchdog = "connections.tasks.watchdog_tick"
    assert quiet.filter(_succeeded(watchdog, "False")) and not quiet.filter(_succeeded(watchdog, "False"))
    assert quiet.filter(_succeeded(watchdog, "True"))
    # Real work and anything above INFO are never hidden.
    assert quiet.filter(_received("connections.tasks.poll_connection"))
    assert quiet.filter(_received("connections.tasks.poll_connection"))
    assert quiet.filter(_record("celery.app.trace", "Task %(name)s failed", ({"name": tick},), logging.ERROR))
    # LOG_LEVEL=DEBUG shows every tick.
    monkeypatch.setattr(logging.getLogger(), "level", logging.DEBUG)
    assert quiet.filter(sent) and quiet.filter(_received(tick))
