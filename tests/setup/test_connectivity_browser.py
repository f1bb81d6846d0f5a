"""A real browser presses "Test connection" on a connection's change page: the object-tools
button and the one in the Connectivity test panel (inside the change form, via formaction).
Screenshots go to test-artifacts/."""
from __future__ import annotations


import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from connections.models import Membership, Role

from ..browser import ARTIFACTS, launched_chromium

pytestmark = [pytest.mark.browser, pytest.mark.mailservers, pytest.mark.django_db(transaction=True)]



@pytest.fixture
def browser():
    with launched_chromium() as b:
        yield b



def in_view(page, selector: str) -> bool:
    """The element is inside the browser window as it stands (no scrolling)."""
    return page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect();"
                                           " return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 0; }")


def test_operator_presses_test_connection(browser, live_server, settings, make_connection, tenant) -> None:
    settings.SESSION_COOKIE_SECURE = False  # the live server speaks plain HTTP
    settings.CSRF_COOKIE_SECURE = False
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    operator = get_user_model().objects.create_user("op", password="login-pw-1", is_staff=True)
    Membership.objects.create(user=operator, tenant=tenant, role=Role.OPERATOR)
    good = make_connection("smtp", "starttls_mandatory", "encrypted")
    bad = make_connection("imap", "ssl_tls", "plain", listener="imaps_wronghost")

    client = Client()
    client.force_login(operator)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME,
                          "value": client.cookies[settings.SESSION_COOKIE_NAME].value, "url": live_server.url}])
    page = context.new_page()
    ARTIFACTS.mkdir(exist_ok=True)

    # The button in the object tools.
    page.goto(live_server.url + reverse("admin:connections_outboundconnection_change", args=[good.pk]))
    assert page.inner_text("#connectivity-test").count("Not tested yet.") == 1
    with page.expect_navigation():
        page.click("#content .object-tools button.tm-connectivity-test")
    assert "test passed" in page.inner_text("ul.messagelist")
    assert page.get_attribute("#connectivity-test .tm-connectivity-outcome", "data-ok") == "1"
    # Results in view (issue 20): the page lands on the result, and the confirmation is there too.
    assert "test passed" in page.inner_text("#connectivity-test .tm-confirmation")
    assert in_view(page, "#connectivity-test .tm-confirmation") and in_view(page, ".tm-connectivity-outcome")
    page.screenshot(path=str(ARTIFACTS / "connectivity-passed.png"), full_page=True)
    good.refresh_from_db()
    assert good.last_test_ok is True

    # The button inside the change form's panel (formaction): a failing test, with its hint.
    page.goto(live_server.url + reverse("admin:connections_inboundconnection_change", args=[bad.pk]))
    with page.expect_navigation():
        page.click("#connectivity-test button.tm-connectivity-test")
    message = page.inner_text("ul.messagelist")
    assert "FAILED at tls" in message and "mail.example.org" in message and "hint:" in message
    assert page.get_attribute("#connectivity-test .tm-connectivity-outcome", "data-ok") == "0"
    assert "FAILED at tls" in page.inner_text("#connectivity-test .tm-confirmation")
    assert in_view(page, "#connectivity-test .tm-confirmation") and in_view(page, ".tm-connectivity-outcome")
    assert page.is_visible('#connectivity-test tr[data-step="tls"]')
    page.screenshot(path=str(ARTIFACTS / "connectivity-failed.png"), full_page=True)
    bad.refresh_from_db()
    assert bad.last_test_ok is False
    context.close()
