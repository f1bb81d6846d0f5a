"""Configuration as code: export_config, and the round trip export -> apply -> export (issue 9)."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.models import InboundConnection, OutboundConnection, ScheduleKind, Tenant, UserCredential
from connections.services.setup import credentials as credential_service
from connections.services.setup import config

from .test_applying import PEM

pytestmark = pytest.mark.django_db


def make_rich_setup() -> None:
    acme = Tenant.objects.create(slug="acme", name="ACME Corp")
    globex = Tenant.objects.create(slug="globex", name="Globex", active=False)
    deployed = UserCredential.objects.create(tenant=acme, name="acme-mailbox", username="orders@acme.example",
                                             password="s3cret-orders", description="Orders mailbox owner")
    credential_service.deploy(credential_id=deployed.pk, user=None)
    UserCredential.objects.create(tenant=globex, name="support", username="support@globex.example", password="pw-globex")
    OutboundConnection.objects.create(
        tenant=acme, name="smtp-main", host="smtp.acme.example", port=None, protection="starttls_mandatory",
        authentication="encrypted", credential_name="acme-mailbox", default_from="ACME <orders@acme.example>",
        default_reply_to="help@acme.example", trusted_ca=PEM, rate_limit_per_minute=60, max_per_session=10,
    )
    InboundConnection.objects.create(
        tenant=acme, name="orders", host="imap.acme.example", port=993, credential_name="acme-mailbox",
        post_processing="move_and_mark_read", archive_folder="Archive", selection="all",
        schedule_kind=ScheduleKind.WEEKLY, schedule_weekdays="0,2,4", schedule_start_hour=8,
        schedule_end_hour=18, schedule_every=120, timezone="Europe/Berlin",
    )
    InboundConnection.objects.create(
        tenant=globex, name="pop", protocol="pop3", host="pop.globex.example", protection="off",
        authentication="encrypted", credential_name="support", post_processing="delete",
        schedule_kind=ScheduleKind.CRON, schedule_cron="0 * * * 1-5", enabled=False, verify_certificate=False,
    )


def test_export_then_apply_on_an_empty_database_then_export_gives_the_same_document():
    make_rich_setup()
    text = config.dump(config.export())
    assert "s3cret" not in text and "pw-globex" not in text
    document = config.load(text)
    acme, globex = document["tenants"]
    assert acme["credentials"][0]["password_env"] == "ACME_ACME_MAILBOX_PASSWORD"
    assert acme["credentials"][0]["deploy"] is True
    assert globex["credentials"][0] == {
        "name": "support", "description": None, "user": "support@globex.example",
        "password_env": "GLOBEX_SUPPORT_PASSWORD", "deploy": False,
    }
    assert acme["inbound"][0]["schedule"] == {"weekdays": ["mon", "wed", "fri"], "between": ["08:00", "18:00"], "every": 120}
    assert globex["inbound"][0]["schedule"] == {"cron": "0 * * * 1-5"}
    assert "folder" not in globex["inbound"][0]  # imap only
    assert acme["outbound"][0]["trusted_ca"] == PEM and acme["outbound"][0]["port"] is None
    assert "schedule: {weekdays: [mon, wed, fri], between: ['08:00', '18:00'], every: 120}" in text

    for model in (InboundConnection, OutboundConnection, UserCredential, Tenant):
        model.objects.all().delete()
    env = {"ACME_ACME_MAILBOX_PASSWORD": "s3cret-orders", "GLOBEX_SUPPORT_PASSWORD": "pw-globex"}
    plan = config.apply(document, environ=env)
    assert plan.applied
    assert config.dump(config.export()) == text
    assert config.apply(document, environ=env).empty
    assert UserCredential.objects.get(name="support").version == 0  # deploy: false


def test_applying_the_export_to_the_same_database_changes_nothing():
    make_rich_setup()
    cred = UserCredential.objects.get(name="acme-mailbox")
    cred.username = "changed@acme.example"  # an undeployed change: export says deploy: false
    credential_service.save_artifact(credential=cred)
    plan = config.apply(config.load(config.dump(config.export())), environ={})
    assert plan.empty, str(plan)


def test_export_command_filters_by_tenant_and_refuses_unknown_slugs():
    make_rich_setup()
    out = io.StringIO()
    call_command("export_config", "globex", stdout=out)
    assert out.getvalue().startswith("# TenantMail configuration")
    document = config.load(out.getvalue())
    assert [t["slug"] for t in document["tenants"]] == ["globex"]
    assert document == config.export(tenant_slugs=["globex"])
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        call_command("export_config", "nope", stdout=io.StringIO())
