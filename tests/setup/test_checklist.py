"""The setup checklist: every item in both states, and the readiness it gives (issue 7)."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from connections.models import Readiness, UserCredential
from connections.services.setup import checklist
from connections.services.setup import credentials as credential_service

from . import factories as f

pytestmark = pytest.mark.django_db


def items(conn) -> dict[str, checklist.Item]:
    return {i.key: i for i in checklist.evaluate(connection=conn)}


@pytest.fixture
def acme():
    return f.tenant("acme", "ACME Corp")


def test_complete_inbound_and_outbound_are_ready(acme):
    f.credential(acme)
    for conn in (f.inbound(acme), f.outbound(acme)):
        ev = checklist.evaluation(connection=conn)
        assert [i.state for i in ev.items] == ["ok"] * len(ev.items), [str(i) for i in ev.problems]
        assert ev.readiness == Readiness.READY
    assert list(items(f.inbound(acme, "b"))) == [
        "authentication", "credential_exists", "credential_deployed", "credential_name", "transport",
        "connectivity", "schedule", "post_processing",
    ]
    assert list(items(f.outbound(acme, "o2"))) == [
        "authentication", "credential_exists", "credential_deployed", "credential_name", "transport",
        "connectivity", "default_from", "enabled",
    ]


@pytest.mark.parametrize(
    "auth, label, description",
    [
        ("encrypted", "Authentication: Encrypted user/password",
         "User name and password are hashed before being sent to the server"),
        ("plain", "Authentication: Plain user/password",
         "User name and password are sent in plain text (only use together with SSL or TLS)"),
        ("none", "Authentication: None", None),
    ],
)
def test_authentication_item_describes_the_method(acme, auth, label, description):
    f.credential(acme)
    got = items(f.outbound(acme, authentication=auth))
    assert got["authentication"].label == label
    if description:
        assert got["authentication"].detail == description
    # Without authentication no credential is needed, so none is asked for.
    assert ("credential_exists" in got) is (auth != "none")


def test_credential_missing_links_to_its_add_form_with_the_name_filled_in(acme):
    conn = f.inbound(acme, credential_name="orders-box")
    got = items(conn)
    assert got["credential_exists"].state == "fail"
    assert "No User Credentials artifact named 'orders-box'" in got["credential_exists"].detail
    link = urlparse(got["credential_exists"].link)
    assert link.path == "/admin/connections/usercredential/add/"
    assert parse_qs(link.query) == {"name": ["orders-box"], "tenant": [str(acme.pk)]}
    assert got["credential_deployed"].state == "fail"
    assert got["credential_name"].state == "fail"
    assert checklist.readiness(connection=conn) == Readiness.BLOCKED
    # Created and deployed: the same connection's items turn to ok.
    f.credential(acme, "orders-box")
    got = items(conn)
    assert [got[k].state for k in ("credential_exists", "credential_deployed", "credential_name")] == ["ok"] * 3
    assert got["connectivity"].state == "warn"  # the last pass predates the deploy
    conn.last_test_at = timezone.now()  # tested again
    assert checklist.readiness(connection=conn) == Readiness.READY


def test_credential_name_case_mismatch_is_pointed_out(acme):
    f.credential(acme, "Mailbox")
    got = items(f.inbound(acme, credential_name="mailbox"))
    assert got["credential_exists"].state == "fail"
    assert "did you mean 'Mailbox'?" in got["credential_exists"].detail


def test_a_credential_of_another_tenant_does_not_count(acme):
    other = f.tenant("globex")
    f.credential(other, "mailbox")
    assert items(f.inbound(acme))["credential_exists"].state == "fail"


def test_empty_credential_name(acme):
    got = items(f.outbound(acme, credential_name=""))
    assert got["credential_name"].state == "fail"
    assert got["credential_name"].detail == "Credential Name is empty."
    assert got["credential_exists"].state == "fail"


def test_deployed_item_never_deployed_then_changed_then_redeployed(acme):
    cred = f.credential(acme, deploy=False)
    conn = f.inbound(acme)
    got = items(conn)["credential_deployed"]
    assert got.state == "fail" and "never been deployed" in got.detail
    back = f"/admin/connections/inboundconnection/{conn.pk}/change/#setup-checklist"
    assert urlparse(got.link).path == f"/admin/connections/usercredential/{cred.pk}/deploy/"
    assert parse_qs(urlparse(got.link).query) == {"next": [back]} and got.link_label == "Deploy"
    cred = credential_service.deploy(credential_id=cred.pk, user=None)
    assert items(conn)["credential_deployed"].state == "ok"
    credential_service.save_artifact(credential=cred, password="a-new-password")
    got = items(conn)["credential_deployed"]
    # The connection keeps working with version 1: Needs attention ("deploy to use it"), not Blocked.
    assert got.state == "warn" and "changes that are not deployed" in got.detail and "version 1" in got.detail
    assert "Deploy to use them" in got.detail and "/deploy/?next=" in got.link
    credential_service.deploy(credential_id=cred.pk, user=None)
    got = items(conn)["credential_deployed"]
    assert got.state == "ok" and "Version 2" in got.detail


@pytest.mark.parametrize(
    "conf, state, text",
    [
        (dict(protection="ssl_tls", authentication="plain"), "ok", "SSL/TLS with certificate validation."),
        (dict(protection="starttls_mandatory", authentication="plain"), "ok", "STARTTLS mandatory"),
        (dict(protection="off", authentication="plain"), "fail", "Plain user/password needs STARTTLS mandatory or SSL/TLS"),
        (dict(protection="starttls_optional", authentication="plain"), "warn", "the login is refused"),
        (dict(protection="off", authentication="plain", allow_plain_without_tls=True), "warn", "password can be read"),
        (dict(protection="starttls_optional", authentication="encrypted"), "warn", "STARTTLS optional"),
        (dict(protection="off", authentication="encrypted"), "warn", "No TLS"),
        (dict(protection="ssl_tls", authentication="plain", verify_certificate=False), "warn", "Certificate validation is off"),
        (dict(protection="ssl_tls", authentication="plain", allow_plain_without_tls=True), "warn", "Allow plain login without TLS"),
    ],
)
def test_transport_security(acme, conf, state, text):
    f.credential(acme)
    got = items(f.inbound(acme, **conf))["transport"]
    assert got.state == state and text in got.detail, got


def test_connectivity_item(acme):
    f.credential(acme)
    conn = f.outbound(acme, last_test_at=None, last_test_ok=None, last_test_summary="")
    got = items(conn)["connectivity"]
    assert got.state == "warn" and got.detail == "Not tested yet."
    assert checklist.readiness(connection=conn) == Readiness.NEEDS_ATTENTION
    conn = f.outbound(acme, "o2", last_test_ok=False, last_test_summary="535 authentication failed")
    got = items(conn)["connectivity"]
    assert got.state == "fail" and got.detail.startswith("Failed ") and "535 authentication failed" in got.detail
    conn = f.outbound(acme, "o3")
    got = items(conn)["connectivity"]
    assert got.state == "ok" and "Logged in; INBOX has 3 mails" in got.detail


def test_a_pass_before_the_credential_was_deployed_again_is_only_a_warning(acme):
    cred = f.credential(acme)
    conn = f.outbound(acme)  # tested now, after the deploy
    assert items(conn)["connectivity"].state == "ok"
    credential_service.save_artifact(credential=cred, password="rotated")
    credential_service.deploy(credential_id=cred.pk, user=None)
    got = items(conn)["connectivity"]
    assert got.state == "warn" and "was deployed again" in got.detail
    assert got.detail.startswith("Test is older than the last deploy/change; run it again")
    assert got.link_label == "Test again"


def _recorded_test(conn, **tested):
    """The connection as a real test records it: the settings it ran with in the report."""
    report = {"ok": True, "connection": {
        "host": conn.host, "port": conn.port, "protection": conn.protection,
        "authentication": conn.authentication, "credential_name": conn.credential_name,
        "verify_certificate": conn.verify_certificate, "allow_plain_without_tls": conn.allow_plain_without_tls,
        "protocol": getattr(conn, "protocol", "smtp"), **tested}}
    type(conn).objects.filter(pk=conn.pk).update(last_test_at=timezone.now(), last_test_ok=True,
                                                 last_test_report=report, last_test_summary="all 7 steps passed")
    conn.refresh_from_db()
    return conn


@pytest.mark.parametrize("field,value,label", [
    ("host", "other.acme.example", "host"),
    ("port", 2525, "port"),
    ("protection", "ssl_tls", "protection"),
    ("credential_name", "other-box", "Credential Name"),
    ("verify_certificate", False, "validate server certificate"),
])
def test_a_pass_before_the_connection_changed_is_only_a_warning(acme, field, value, label):
    f.credential(acme)
    f.credential(acme, "other-box")
    conn = _recorded_test(f.outbound(acme))
    assert items(conn)["connectivity"].state == "ok"
    conn.save()  # saved unchanged (the admin's Save button): the pass still counts
    assert items(conn)["connectivity"].state == "ok"
    setattr(conn, field, value)
    conn.save()
    got = items(conn)["connectivity"]
    assert got.state == "warn", got
    assert "Test is older than the last deploy/change; run it again" in got.detail and label in got.detail


def test_a_pass_before_the_inbound_protocol_changed_is_only_a_warning(acme):
    f.credential(acme)
    conn = _recorded_test(f.inbound(acme))
    assert items(conn)["connectivity"].state == "ok"
    conn.protocol, conn.post_processing = "pop3", "delete"
    conn.save()
    assert items(conn)["connectivity"].state == "warn"


def test_a_failed_test_older_than_a_change_asks_for_a_new_test(acme):
    """A failure whose cause may be fixed no longer blocks: Needs attention, "run it again"."""
    cred = f.credential(acme)
    conn = _recorded_test(f.outbound(acme))
    type(conn).objects.filter(pk=conn.pk).update(last_test_ok=False, last_test_summary="535 auth failed")
    conn.refresh_from_db()
    assert items(conn)["connectivity"].state == "fail"
    conn.save()  # saved unchanged: still the same failure
    assert items(conn)["connectivity"].state == "fail"
    assert checklist.readiness(connection=conn) == Readiness.BLOCKED
    conn.host = "elsewhere.example"
    conn.save()
    got = items(conn)["connectivity"]
    assert got.state == "warn" and "run the test again" in got.detail and "host" in got.detail, got
    assert "535 auth failed" in got.detail and got.link_label == "Test again"
    assert checklist.readiness(connection=conn) == Readiness.NEEDS_ATTENTION
    # The credential deployed again after the failed test: the same.
    conn = _recorded_test(f.outbound(acme, "o2"))
    type(conn).objects.filter(pk=conn.pk).update(last_test_ok=False, last_test_summary="535 auth failed")
    conn.refresh_from_db()
    assert items(conn)["connectivity"].state == "fail"
    credential_service.save_artifact(credential=cred, password="the-right-one")
    credential_service.deploy(credential_id=cred.pk, user=None)
    got = items(conn)["connectivity"]
    assert got.state == "warn" and "was deployed again" in got.detail, got


def test_dates_have_one_compact_format_and_no_double_period(acme):
    from datetime import datetime, timedelta, timezone as dt_timezone

    f.credential(acme)
    when = datetime(2026, 11, 21, 9, 37, tzinfo=dt_timezone.utc)
    conn = f.outbound(acme, last_test_at=when, last_test_summary="all steps passed.")
    # Deployed and saved before that test (update() leaves auto_now alone).
    UserCredential.objects.update(deployed_at=when - timedelta(days=1))
    type(conn).objects.filter(pk=conn.pk).update(updated_at=when)
    conn.refresh_from_db()
    got = items(conn)["connectivity"]
    assert got.detail == "Passed 2026-11-21 09:37: all steps passed.", got.detail
    assert ".." not in " ".join(i.detail for i in checklist.evaluate(connection=conn))
    deployed = items(conn)["credential_deployed"].detail
    assert re.search(r"on \d{4}-\d{2}-\d{2} \d{2}:\d{2},", deployed), deployed


def test_schedule_item(acme):
    f.credential(acme)
    got = items(f.inbound(acme, schedule_every=600))["schedule"]
    assert got.state == "ok" and "every 10 minutes (UTC)" in got.detail
    got = items(f.inbound(acme, "off", enabled=False))["schedule"]
    assert got.state == "warn" and got.detail.startswith("Disabled")
    got = items(f.inbound(acme, "bad", schedule_kind="cron", schedule_cron="not a cron"))["schedule"]
    assert got.state == "fail" and "cannot run" in got.detail


@pytest.mark.parametrize(
    "conf, state, text",
    [
        (dict(selection="unread", post_processing="mark_read"), "ok", "Mark as read"),
        (dict(selection="all", post_processing="mark_read"), "warn", "selection All re-processes mail"),
        (dict(selection="all", post_processing="keep"), "warn", "re-processes mail"),
        (dict(selection="unread", post_processing="keep"), "warn", "stay unread"),
        (dict(post_processing="move", archive_folder=""), "fail", "needs an archive folder"),
        (dict(post_processing="move", archive_folder="INBOX"), "fail", "must differ from the polled folder"),
        (dict(post_processing="move_and_mark_read", archive_folder="Archive"), "ok", "move to 'Archive'"),
        (dict(post_processing="delete"), "ok", "deleted on the server"),
        (dict(protocol="pop3", post_processing="mark_read"), "fail", "POP3 has no folders"),
        (dict(protocol="pop3", post_processing="delete"), "ok", "Delete"),
        (dict(protocol="pop3", post_processing="keep"), "warn", "mailbox grows"),
    ],
)
def test_post_processing_item(acme, conf, state, text):
    f.credential(acme)
    got = items(f.inbound(acme, **conf))["post_processing"]
    assert got.state == state and text in got.detail, got


def test_default_from_item(acme):
    f.credential(acme)
    assert items(f.outbound(acme))["default_from"].state == "ok"
    got = items(f.outbound(acme, "nofrom", default_from=""))["default_from"]
    assert got.state == "fail"


def test_outbound_enabled_item(acme):
    f.credential(acme)
    assert items(f.outbound(acme))["enabled"].state == "ok"
    got = items(f.outbound(acme, "off", enabled=False))["enabled"]
    assert got.state == "warn" and got.detail.startswith("Disabled")


def test_readiness_is_the_worst_item(acme):
    f.credential(acme)
    assert checklist.readiness(connection=f.inbound(acme, "a")) == Readiness.READY
    assert checklist.readiness(connection=f.inbound(acme, "b", protection="starttls_optional", authentication="encrypted")) \
        == Readiness.NEEDS_ATTENTION
    assert checklist.readiness(connection=f.inbound(acme, "c", protection="off")) == Readiness.BLOCKED


def test_evaluate_many_reads_all_credentials_in_one_query(acme, django_assert_num_queries):
    globex = f.tenant("globex")
    for t in (acme, globex):
        f.credential(t)
        for n in range(6):
            f.inbound(t, f"in{n}", credential_name="mailbox" if n % 2 else "missing")
            f.outbound(t, f"out{n}")
    conns = checklist.connections_for(tenant_ids=None)  # 2 queries (inbound, outbound)
    assert len(conns) == 24
    checklist.evaluate_many(connections=conns)  # the alert thresholds (issue 16) are cached per process: warm them
    with django_assert_num_queries(1):
        evaluations = checklist.evaluate_many(connections=conns)
    by = {(e.connection.tenant.slug, e.kind, e.connection.name): e.readiness for e in evaluations}
    assert by[("acme", "inbound", "in0")] == Readiness.BLOCKED
    assert by[("globex", "inbound", "in1")] == Readiness.READY


def test_nothing_secret_in_the_checklist(acme):
    f.credential(acme, password="TopSecret-42")
    text = repr([i.as_dict() for i in checklist.evaluate(connection=f.inbound(acme))])
    assert "TopSecret-42" not in text
    assert UserCredential.objects.get().password == "TopSecret-42"
