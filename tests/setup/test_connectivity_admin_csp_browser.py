"""The admin under its strict Content-Security-Policy, in real Chromium: every page carries
the policy, nothing is blocked, and the admin's scripts still work — Django's own (actions,
date shortcuts) and TenantMail's (the setup checklist's live refresh, Test connection)."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from ..browser import ARTIFACTS, launched_chromium

pytestmark = [pytest.mark.browser, pytest.mark.mailservers, pytest.mark.django_db(transaction=True)]

# Recorded in the page before any of its own code runs (init scripts are not subject to CSP).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));
"""


@pytest.fixture
def browser():
    with launched_chromium() as b:
        yield b


def _policy_is_strict(policy: str) -> None:
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    script = directives["script-src"].split()
    assert "'self'" in script  # and a nonce on the pages with an inline script
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'self'"


def test_admin_works_under_its_csp(browser, live_server, settings, make_connection, tenant):
    settings.SESSION_COOKIE_SECURE = False  # the live server speaks plain HTTP
    settings.CSRF_COOKIE_SECURE = False
    get_user_model().objects.create_superuser("csp-admin", "a@example.com", "a-long-pass-phrase")
    conn = make_connection("smtp", "starttls_mandatory", "encrypted")
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    policies: list[tuple[str, str]] = []
    page.on("response", lambda r: policies.append((r.url, r.headers.get("content-security-policy", "")))
            if r.request.resource_type == "document" else None)
    base = live_server.url
    visited: list[str] = []

    def check(what: str) -> None:
        assert page.evaluate("window.__csp") == [], (what, page.evaluate("window.__csp"))
        visited.append(what)

    # The sign-in page and the dashboard.
    page.goto(f"{base}/admin/login/?next=/admin/")
    check("login")
    page.fill("#id_username", "csp-admin")
    page.fill("#id_password", "a-long-pass-phrase")
    page.click("input[type=submit]")
    page.wait_for_selector("#content")
    check("index")

    # Change lists: Django's actions.js counts the selection.
    for model in ("inboundconnection", "outboundconnection", "usercredential", "outboxmessage", "storedmessage",
                  "pollrun", "tenant", "membership"):
        page.goto(f"{base}{reverse(f'admin:connections_{model}_changelist')}")
        check(model)
    page.goto(f"{base}{reverse('admin:connections_outboundconnection_changelist')}")
    page.check("#action-toggle")
    page.wait_for_function("document.querySelector('.action-counter').textContent.includes('1 of 1 selected')")
    check("actions.js")

    # Django's date/time shortcuts (DateTimeShortcuts.js) on the outbox's add form.
    page.goto(f"{base}{reverse('admin:connections_outboxmessage_add')}")
    page.wait_for_selector(".datetimeshortcuts", state="attached", timeout=10_000)  # added by the script
    check("DateTimeShortcuts.js")

    # The connection's change page: the checklist's inline script (nonce) refreshes it live.
    page.goto(f"{base}{reverse('admin:connections_outboundconnection_change', args=[conn.pk])}")
    page.wait_for_selector("#setup-checklist")
    checklist_url = reverse("admin:connections_outboundconnection_checklist", args=[conn.pk])
    with page.expect_request(lambda r: r.url.endswith(checklist_url), timeout=10_000):
        page.evaluate("window.dispatchEvent(new Event('focus'))")
    check("checklist refresh")

    # Test connection against the real Postfix: the result shows on the page.
    with page.expect_navigation():
        page.click("#content .object-tools button.tm-connectivity-test")
    assert "test passed" in page.inner_text("ul.messagelist")
    assert page.get_attribute("#connectivity-test .tm-connectivity-outcome", "data-ok") == "1"
    check("test connection")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-under-csp.png"), full_page=True)

    assert not [m for m in console if "Content Security Policy" in m or "Refused to" in m], console
    admin_pages = [(url, p) for url, p in policies if "/admin/" in url]
    assert len(admin_pages) >= 12
    for url, policy in admin_pages:
        assert policy, f"no CSP on {url}"
        _policy_is_strict(policy)
    with_nonce = [re.search(r"'nonce-([^']+)'", p).group(1) for _url, p in admin_pages if "'nonce-" in p]
    change_pages = [p for url, p in admin_pages if f"/{conn.pk}/change/" in url]  # also ?tested=1 after the test
    assert len(change_pages) == 2 and all("'nonce-" in p for p in change_pages)  # the checklist's script
    assert len(set(with_nonce)) == len(with_nonce) >= 2  # a fresh nonce for every page
    context.close()
