"""The JSON API through the whole stack: real tokens (made by the command), mails from a
real poll of Dovecot, the Django test client sending `Authorization: Bearer …`."""
from __future__ import annotations

import base64
import io
import re
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.models import ApiToken, OutboundConnection, OutboxMessage, Tenant
from connections.services.access import api_tokens
from connections.services.inbound.poll import poll

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def make_token(slug: str, *scopes: str) -> str:
    out = io.StringIO()
    args = [slug, f"tok-{uuid.uuid4().hex[:6]}"]
    for scope in scopes:
        args += ["--scope", scope]
    call_command("create_api_token", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().rstrip("\n").splitlines()[-1]


def get(client, url: str, token: str | None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(url, **headers, **extra)


@pytest.fixture
def stored(polled):
    conn, _ = polled(3)
    result = poll(connection_id=conn.pk, trigger="manual")
    assert result.stored == 3
    return conn, sorted(result.stored_ids)


@pytest.mark.smoke
def test_command_prints_the_token_alone_on_the_last_line(db):
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    token = make_token("acme", "messages:read", "outbox:write")
    assert token.startswith("tm_") and " " not in token
    row = ApiToken.objects.get(tenant=tenant)
    assert row.scopes == ["messages:read", "outbox:write"]
    assert row.token_hash == api_tokens.hash_token(token) and token not in str(row.__dict__)
    with pytest.raises(CommandError, match="No tenant"):
        call_command("create_api_token", "nope", "x", "--scope", "messages:read", stdout=io.StringIO())
    with pytest.raises(CommandError, match="at least one scope"):
        call_command("create_api_token", "acme", "y", stdout=io.StringIO(), stderr=io.StringIO())


def test_messages_list_detail_raw_and_attachment(client, stored):
    conn, ids = stored
    token = make_token(conn.tenant.slug, "messages:read")
    response = get(client, "/api/v1/messages/", token)
    assert response.status_code == 200, response.content
    data = response.json()
    assert [r["id"] for r in data["results"]] == sorted(ids, reverse=True)  # same Date: newest id first
    item = data["results"][0]
    assert item["connection"] == conn.name and item["from"] == "Orders <orders@shop.example>"
    assert item["subject"].startswith("Order ") and item["date"].startswith("2026-12-07T10:00:00")

    # Keyset pages: the same as the pages' (size 2, then the rest).
    first = get(client, "/api/v1/messages/?page_size=2", token).json()
    assert len(first["results"]) == 2 and first["older"] and first["next"]
    second = get(client, f"/api/v1/messages/?page_size=2&older={first['older']}", token).json()
    assert [r["id"] for r in second["results"]] == [min(ids)] and second["older"] is None
    # Search and filters of the /messages/ pages.
    hits = get(client, "/api/v1/messages/?q=%22Order+number+1%22", token).json()["results"]
    assert [r["subject"] for r in hits] == ["Order 1 — Grüße"]
    assert get(client, f"/api/v1/messages/?connection={conn.name}", token).json()["results"]
    assert get(client, "/api/v1/messages/?connection=nope", token).json()["results"] == []
    assert get(client, "/api/v1/messages/?from=2026-12-08", token).json()["results"] == []
    assert get(client, "/api/v1/messages/?from=not-a-date", token).status_code == 400
    assert get(client, "/api/v1/messages/?page_size=0", token).status_code == 400

    detail = get(client, f"/api/v1/messages/{ids[0]}/", token).json()
    assert detail["to"] == ["Zoë <in@example.test>", "b@example.test"] and "Order number 0" in detail["text"]
    raw = get(client, f"/api/v1/messages/{ids[0]}/raw", token)
    assert raw.status_code == 200 and raw["Content-Type"] == "message/rfc822"
    body = b"".join(raw.streaming_content)
    assert body.startswith(b"From: Orders") or b"Message-ID: <order-0@shop.example>" in body
    att = get(client, f"/api/v1/messages/{ids[0]}/attachments/0", token)
    assert att.status_code == 200 and att["Content-Type"] == "application/pdf"
    assert b"".join(att.streaming_content) == b"%PDF-1.4 test\n"
    assert get(client, f"/api/v1/messages/{ids[0]}/attachments/1", token).status_code == 404


def test_isolation_scopes_and_auth(client, stored):
    conn, ids = stored
    other = Tenant.objects.create(name="Other", slug=f"o-{uuid.uuid4().hex[:6]}")
    foreign = make_token(other.slug, "messages:read", "outbox:read", "connections:read")
    for url in (f"/api/v1/messages/{ids[0]}/", f"/api/v1/messages/{ids[0]}/raw",
                f"/api/v1/messages/{ids[0]}/attachments/0"):
        response = get(client, url, foreign)
        assert response.status_code == 404, url
        assert response.json() == {"detail": "No such message."}
    assert get(client, "/api/v1/messages/", foreign).json()["results"] == []
    assert get(client, f"/api/v1/messages/?connection={conn.pk}", foreign).json()["results"] == []
    assert get(client, "/api/v1/connections/", foreign).json()["results"] == []

    outbox_only = make_token(conn.tenant.slug, "outbox:write")
    assert get(client, "/api/v1/messages/", outbox_only).status_code == 403
    assert get(client, "/api/v1/connections/", outbox_only).status_code == 403
    no_token = get(client, "/api/v1/messages/", None)
    assert no_token.status_code == 401 and no_token["WWW-Authenticate"].startswith("Bearer")
    assert get(client, "/api/v1/messages/", "tm_not-a-real-token").status_code == 401

    token = make_token(conn.tenant.slug, "messages:read", "connections:read")
    row = ApiToken.objects.get(token_hash=api_tokens.hash_token(token))
    assert row.last_used_at is None
    assert get(client, "/api/v1/messages/", token).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None
    states = get(client, "/api/v1/connections/", token).json()["results"]
    assert [(s["name"], s["direction"], s["state"]) for s in states] == [(conn.name, "inbound", "ok")]
    api_tokens.revoke(token_ids=[row.pk])
    assert get(client, "/api/v1/messages/", token).status_code == 401


def test_rate_limited_per_token(client, stored, settings):
    settings.API_RATE_LIMIT = "3/min"
    from django.core.cache import cache

    cache.clear()
    conn, _ = stored
    one, two = make_token(conn.tenant.slug, "messages:read"), make_token(conn.tenant.slug, "messages:read")
    codes = [get(client, "/api/v1/messages/", one).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert get(client, "/api/v1/messages/", two).status_code == 200  # per token, not per client


def test_outbox_post_with_idempotency_key(client, stored):
    conn, _ = stored
    outbound = OutboundConnection.objects.create(tenant=conn.tenant, name="notifications", host="smtp.example.test",
                                                 default_from="Acme <noreply@acme.example>", enabled=False)
    token = make_token(conn.tenant.slug, "outbox:write")
    body = {"connection": "notifications", "to": ["a@example.test"], "cc": ["b@example.test"], "bcc": [],
            "subject": "Hello", "text": "Hi there", "html": "<p>Hi</p>",
            "attachments": [{"filename": "a.txt", "content_type": "text/plain",
                             "content_base64": base64.b64encode(b"attached").decode()}]}
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_IDEMPOTENCY_KEY": "order-4711"}
    first = client.post("/api/v1/outbox/", body, content_type="application/json", **headers)
    assert first.status_code == 201, first.content
    again = client.post("/api/v1/outbox/", body, content_type="application/json", **headers)
    assert again.status_code == 201 and again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert OutboxMessage.objects.filter(connection=outbound).count() == 1
    assert first.json()["status"] == "queued"
    changed = client.post("/api/v1/outbox/", {**body, "subject": "Other"}, content_type="application/json",
                          **headers)
    assert changed.status_code == 409

    message_id = first.json()["id"]
    detail = client.get(f"/api/v1/outbox/{message_id}/", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert detail["status"] == "queued" and detail["to"] == ["a@example.test"] and detail["recipients"] == {}
    bad = client.post("/api/v1/outbox/", {**body, "connection": "nope"}, content_type="application/json",
                      HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bad.status_code == 400 and "no outbound connection" in bad.json()["detail"]
    bad = client.post("/api/v1/outbox/", {**body, "to": ["not an address"]}, content_type="application/json",
                      HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bad.status_code == 400
    reader = make_token(conn.tenant.slug, "messages:read")
    assert client.post("/api/v1/outbox/", body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {reader}").status_code == 403
    other = Tenant.objects.create(name="Other", slug=f"o-{uuid.uuid4().hex[:6]}")
    foreign = make_token(other.slug, "outbox:write")
    assert client.get(f"/api/v1/outbox/{message_id}/", HTTP_AUTHORIZATION=f"Bearer {foreign}").status_code == 404
    assert client.post("/api/v1/outbox/", body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {foreign}", HTTP_IDEMPOTENCY_KEY="order-4711").status_code == 400


def test_schema_is_served(client, db):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/messages/{id}/raw" in response.content and b"bearerAuth" in response.content


def test_admin_creates_a_token_shown_once_and_revokes_it(client, db, django_user_model):
    tenant = Tenant.objects.create(name="Acme", slug=f"a-{uuid.uuid4().hex[:6]}")
    admin = django_user_model.objects.create_superuser("root", "root@example.test", "pw-root-123")
    client.force_login(admin)
    response = client.post("/admin/connections/apitoken/add/", {
        "tenant": tenant.pk, "name": "erp", "scope_choices": ["messages:read", "connections:read"]}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    secret = re.search(r"(tm_\S+)", shown[0])[1]
    token = ApiToken.objects.get(tenant=tenant, name="erp")
    assert token.token_hash == api_tokens.hash_token(secret) and token.scopes == ["messages:read", "connections:read"]
    assert secret not in client.get(f"/admin/connections/apitoken/{token.pk}/change/").content.decode()
    assert get(client, "/api/v1/connections/", secret).status_code == 200
    client.post("/admin/connections/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]})
    assert get(client, "/api/v1/connections/", secret).status_code == 401
