"""poll_mailbox and export_messages."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from connections.models import StoredMessage

from .mails import make_mail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def test_poll_mailbox_json_and_export(mail_servers, mailbox, make_inbound, tmp_path):
    address, password = mailbox
    mail_servers.append(address, [make_mail(f"cmd {i}") for i in range(2)])
    conn = make_inbound(address, password)
    out = io.StringIO()
    call_command("poll_mailbox", conn.tenant.slug, conn.name, "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["outcome"] == "success" and data["stored"] == 2 and data["fetched"] == 2
    assert data["connection"] == conn.name and "duration_ms" in data
    text = io.StringIO()
    call_command("poll_mailbox", conn.tenant.slug, conn.name, stdout=text)
    assert "success: fetched 0, stored 0" in text.getvalue()

    out = io.StringIO()
    call_command("export_messages", conn.tenant.slug, conn.name, "--out", str(tmp_path / "export"), stdout=out)
    assert "Wrote 2 message(s)" in out.getvalue()
    copies = set(mail_servers.server_copies(address).values())
    for message in StoredMessage.objects.filter(connection=conn):
        assert (tmp_path / "export" / f"{message.pk}.eml").read_bytes() in copies
    assert len(list((tmp_path / "export").iterdir())) == 2


def test_poll_mailbox_failure_exit_status(mail_servers, mailbox, make_inbound):
    address, password = mailbox
    conn = make_inbound(address, "wrong-password")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("poll_mailbox", conn.tenant.slug, conn.name, "--json", stdout=out)
    assert exit_info.value.code == 1
    data = json.loads(out.getvalue())
    assert data["outcome"] == "failed" and data["error"]
    assert "wrong-password" not in out.getvalue()


def test_unknown_names_are_clear_errors(tenant):
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        call_command("poll_mailbox", "nope", "x")
    with pytest.raises(CommandError, match="has no inbound connection named 'x'"):
        call_command("export_messages", tenant.slug, "x", "--out", "/tmp/never")
