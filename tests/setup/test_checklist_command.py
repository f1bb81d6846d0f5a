"""python manage.py check_setup: readiness per connection, exit status 1 when any is Blocked."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from . import factories as f

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command("check_setup", *args, stdout=out, no_color=True)
    return out.getvalue()


def test_all_ready_exits_0():
    t = f.tenant("acme")
    f.credential(t)
    f.inbound(t)
    f.outbound(t)
    text = run()
    assert "Ready           inbound  acme/orders" in text
    assert "2 connections: 2 Ready, 0 Needs attention, 0 Blocked" in text


def test_blocked_exits_1_and_names_what_is_missing():
    t = f.tenant("acme")
    f.inbound(t, credential_name="nobody")
    f.outbound(t, protection="starttls_optional", authentication="encrypted", credential_name="")
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("check_setup", stdout=out, no_color=True)
    assert info.value.returncode == 1
    assert "1 connection is Blocked." in str(info.value) or "2 connections are Blocked." in str(info.value)
    text = out.getvalue()
    assert "Blocked         inbound  acme/orders" in text
    assert "✗ User Credentials artifact exists in this tenant: No User Credentials artifact named 'nobody'" in text


def test_needs_attention_only_exits_0():
    t = f.tenant("acme")
    f.credential(t)
    f.inbound(t, last_test_at=None, last_test_ok=None)
    text = run()
    assert "Needs attention" in text and "⚠ Last connectivity test passed: Not tested yet." in text
    with pytest.raises(CommandError, match="1 connection needs attention") as info:
        call_command("check_setup", "--strict", stdout=io.StringIO())
    assert info.value.returncode == 1


def test_tenant_filter_and_json():
    a, b = f.tenant("acme"), f.tenant("globex")
    f.credential(a)
    f.inbound(a)
    f.inbound(b, credential_name="missing")
    data = json.loads(run("acme", "--json"))
    assert [(c["tenant"], c["name"], c["readiness"]) for c in data["connections"]] == [("acme", "orders", "ready")]
    assert data["summary"] == {"ready": 1, "attention": 0, "blocked": 0}
    assert {i["key"] for i in data["connections"][0]["items"]} >= {"authentication", "transport", "schedule"}
    with pytest.raises(CommandError) as info:
        call_command("check_setup", "globex", "--json", stdout=io.StringIO())
    assert info.value.returncode == 1
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        call_command("check_setup", "nope", stdout=io.StringIO())
