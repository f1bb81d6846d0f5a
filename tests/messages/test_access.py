"""Access rules with two tenants: login required, own tenants only, 404 for the rest."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

from connections.middleware import PAGE_POLICY
from connections.models import Membership, Role

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@pytest.fixture
def mails(tenants, store, build):
    raw_a = build(subject="Acme quarterly", text="acme secret text", html="<p>acme html</p>",
                  attachments=[("acme.pdf", "application/pdf", b"%PDF-acme")],
                  inline=[("logo@acme", "image/png", b"\x89PNG acme")])
    raw_b = build(subject="Globex plans", text="globex secret text", html="<p>globex html</p>",
                  attachments=[("globex.pdf", "application/pdf", b"%PDF-globex")],
                  inline=[("logo@globex", "image/png", b"\x89PNG globex")])
    a = store(connection=tenants["conn_a"], raw=raw_a)
    b = store(connection=tenants["conn_b"], raw=raw_b)
    return {"a": a, "b": b, "a_att": list(a.attachments.all()), "b_att": list(b.attachments.all())}


def urls_for(message, attachments):
    pk = message.pk
    urls = [reverse(name, args=[pk]) for name in ("messages:detail", "messages:body", "messages:source", "messages:raw")]
    for att in attachments:
        urls.append(reverse("messages:attachment", args=[pk, att.pk]))
        if att.content_type == "image/png":
            urls.append(reverse("messages:inline", args=[pk, att.pk]))
    return urls


def test_anonymous_is_sent_to_sign_in(client, mails):
    for url in [reverse("messages:list")] + urls_for(mails["a"], mails["a_att"]):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("messages:login") + "?next="), url


def test_member_sees_own_tenant_only_in_list(client, tenants, mails):
    client.force_login(tenants["alice"])
    page = client.get(reverse("messages:list")).content.decode()
    assert "Acme quarterly" in page
    assert "Globex plans" not in page
    assert "globex-inbox" not in page  # not even in the connection filter
    # Searching for the other tenant's words finds nothing.
    page = client.get(reverse("messages:list"), {"q": "globex"}).content.decode()
    assert "Globex plans" not in page
    # Filtering by the other tenant's connection id finds nothing either.
    page = client.get(reverse("messages:list"), {"connection": tenants["conn_b"].pk}).content.decode()
    assert "Globex plans" not in page and "Acme quarterly" not in page


def test_member_reads_everything_of_own_message(client, tenants, mails):
    client.force_login(tenants["alice"])
    for url in urls_for(mails["a"], mails["a_att"]):
        assert client.get(url).status_code == 200, url


def test_other_tenants_message_attachment_and_raw_are_404(client, tenants, mails):
    client.force_login(tenants["alice"])
    for url in urls_for(mails["b"], mails["b_att"]):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"globex" not in response.content.lower(), url


def test_guessed_ids_are_404(client, tenants, mails):
    """Mixing ids (own message + other tenant's attachment) or unknown ids never leaks."""
    client.force_login(tenants["alice"])
    a, b = mails["a"], mails["b"]
    for att in mails["b_att"]:
        assert client.get(reverse("messages:attachment", args=[a.pk, att.pk])).status_code == 404
        assert client.get(reverse("messages:inline", args=[a.pk, att.pk])).status_code == 404
    for att in mails["a_att"]:
        # Own attachment under the other tenant's message id.
        assert client.get(reverse("messages:attachment", args=[b.pk, att.pk])).status_code == 404
    top = max(a.pk, b.pk) + 1000
    for url in (reverse("messages:detail", args=[top]), reverse("messages:raw", args=[top]),
                reverse("messages:attachment", args=[a.pk, top])):
        assert client.get(url).status_code == 404


def test_any_role_may_read_and_superuser_sees_all(client, tenants, mails, django_user_model):
    carol = django_user_model.objects.create_user("carol", password="x")
    Membership.objects.create(user=carol, tenant=tenants["globex"], role=Role.OPERATOR)
    Membership.objects.create(user=carol, tenant=tenants["acme"], role=Role.VIEWER)
    client.force_login(carol)
    page = client.get(reverse("messages:list")).content.decode()
    assert "Acme quarterly" in page and "Globex plans" in page
    root = django_user_model.objects.create_superuser("root", password="x")
    client.force_login(root)
    assert client.get(reverse("messages:detail", args=[mails["b"].pk])).status_code == 200


def test_user_without_tenant_and_inactive_tenant_see_nothing(client, tenants, mails, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", password="x")
    client.force_login(nobody)
    page = client.get(reverse("messages:list")).content.decode()
    assert "Acme quarterly" not in page and "do not have access" in page
    assert client.get(reverse("messages:detail", args=[mails["a"].pk])).status_code == 404

    tenants["acme"].active = False
    tenants["acme"].save()
    client.force_login(tenants["alice"])
    assert "Acme quarterly" not in client.get(reverse("messages:list")).content.decode()
    assert client.get(reverse("messages:raw", args=[mails["a"].pk])).status_code == 404


def test_sign_in_page_works_for_non_staff_readers(client, tenants, mails):
    response = client.get(reverse("messages:login"))
    assert response.status_code == 200 and "default-src 'none'" in response["Content-Security-Policy"]
    response = client.post(reverse("messages:login"), {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 302 and response["Location"] == reverse("messages:list")
    assert "Acme quarterly" in client.get(reverse("messages:list")).content.decode()
    response = client.post(reverse("messages:logout"))
    assert response.status_code == 302
    assert client.get(reverse("messages:list")).status_code == 302


def test_pages_only_answer_get(client, tenants, mails):
    client.force_login(tenants["alice"])
    assert client.post(reverse("messages:detail", args=[mails["a"].pk])).status_code == 405


def _without_csrf(content: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", content)


def test_not_found_is_the_same_page_for_foreign_and_missing_ids_with_csp(client, tenants, mails):
    """A foreign id and an id that does not exist answer the same 404 page (no oracle),
    with the pages' CSP and no caching, for every URL shape."""
    client.force_login(tenants["alice"])
    top = max(mails["a"].pk, mails["b"].pk) + 1000
    pages = []
    for foreign, missing in zip(urls_for(mails["b"], mails["b_att"]), urls_for(mails["b"], mails["b_att"])):
        missing = missing.replace(f"/{mails['b'].pk}/", f"/{top}/", 1)
        for url in (foreign, missing):
            response = client.get(url)
            assert response.status_code == 404, url
            assert response["Content-Security-Policy"] == PAGE_POLICY, url
            assert "no-store" in response["Cache-Control"], url
            assert "Not found" in response.content.decode(), url
            pages.append(_without_csrf(response.content))
    assert len(set(pages)) == 1


def test_ids_beyond_the_database_range_are_404_not_500(client, tenants, mails):
    client.force_login(tenants["alice"])
    huge = 10**20
    a = mails["a"]
    for url in (reverse("messages:detail", args=[huge]), reverse("messages:raw", args=[huge]),
                reverse("messages:body", args=[huge]), reverse("messages:source", args=[huge]),
                reverse("messages:attachment", args=[a.pk, huge]), reverse("messages:inline", args=[huge, huge]),
                reverse("messages:list") + f"?connection={huge}", reverse("messages:list") + f"?older={huge}-{huge}",
                reverse("messages:list") + "?older=1-9999999999999999999", reverse("messages:list") + "?newer=99999999999999999-9999999999999999999"):
        response = client.get(url)
        assert response.status_code in ({200} if "?" in url else {404}), (url, response.status_code)


def test_unknown_urls_under_messages_get_the_same_not_found_page(client, tenants, mails):
    client.force_login(tenants["alice"])
    for url in ("/messages/abc/", "/messages/1/nothing/", "/messages/../../etc/passwd", "/messages/%00/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response["Content-Security-Policy"] == PAGE_POLICY, url
        assert "Not found" in response.content.decode(), url
    # A real page without its trailing slash is still redirected (as APPEND_SLASH does).
    pk = mails["a"].pk
    response = client.get(f"/messages/{pk}", {"remote": "1"})
    assert response.status_code == 301 and response["Location"] == f"/messages/{pk}/?remote=1"
    assert client.get(f"/messages/{pk}/raw.eml").status_code == 200
