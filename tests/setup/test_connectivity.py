"""The connectivity test service against the real Dovecot/Postfix: steps, storage, failures, secrets."""
from __future__ import annotations

import json

import pytest

from connections.errors import ConfigurationError
from connections.models import InboundConnection, OutboundConnection, UserCredential
from connections.services.setup import connectivity
from connections.services.setup.connection_settings import mail_settings_for, open_credential
from connections.services.setup.connectivity import run_connectivity_test

pytestmark = [pytest.mark.django_db, pytest.mark.mailservers]

PROBE_STEPS = ["dns", "tcp", "tls", "greeting", "capabilities", "auth"]


def _names(result) -> list[str]:
    return [s["name"] for s in result.steps]


@pytest.mark.parametrize("protocol,protection,authentication,tail", [
    ("imap", "ssl_tls", "plain", ["folders", "folder", "status"]),
    ("imap", "starttls_mandatory", "encrypted", ["folders", "folder", "status"]),
    ("pop3", "ssl_tls", "plain", ["stat", "uidl"]),
    ("pop3", "starttls_optional", "encrypted", ["stat", "uidl"]),
    ("smtp", "starttls_mandatory", "plain", []),
    ("smtp", "ssl_tls", "encrypted", []),
])
def test_passing_test_reports_every_step_and_is_stored(make_connection, mail_servers, protocol, protection,
                                                       authentication, tail) -> None:
    address, password = mail_servers.add_user()
    mail_servers.append(address, [b"Subject: a\r\n\r\n1\r\n", b"Subject: b\r\n\r\n2\r\n"])
    conn = make_connection(protocol, protection, authentication, address=address, password=password)
    kind = "outbound" if protocol == "smtp" else "inbound"
    result = run_connectivity_test(kind=kind, connection_id=conn.pk)

    assert result.ok, result.report
    names = _names(result)
    assert names[0] == "credential"
    assert sorted(names[1:7]) == sorted(PROBE_STEPS) and names[7:] == tail
    assert all(isinstance(s["duration_ms"], (int, float)) and s["duration_ms"] >= 0 for s in result.steps)
    tls = next(s for s in result.steps if s["name"] == "tls")["detail"]
    assert tls["verified"] is True and tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert "127.0.0.1" in tls["sans"] and "TenantMail Test CA" in tls["issuer"] and tls["days_left"] >= 28
    assert tls["chain_pem"].startswith("-----BEGIN CERTIFICATE-----")
    auth = next(s for s in result.steps if s["name"] == "auth")["detail"]
    assert auth["mechanism"] in (["CRAM-MD5", "APOP"] if authentication == "encrypted" else ["PLAIN", "LOGIN", "USER"])
    if protocol == "imap":
        status = next(s for s in result.steps if s["name"] == "status")["detail"]
        assert (status["messages"], status["unseen"]) == (2, 2)
    if protocol == "pop3":
        assert next(s for s in result.steps if s["name"] == "stat")["detail"]["messages"] == 2

    conn.refresh_from_db()
    assert conn.last_test_ok is True and conn.last_test_at is not None
    assert conn.last_test_summary == result.summary
    assert f"all {len(result.steps)} steps passed" in conn.last_test_summary
    assert conn.last_test_report["steps"] == json.loads(json.dumps(result.report["steps"]))
    assert password not in json.dumps(conn.last_test_report)


def test_wrong_password_names_user_credential_and_version_never_the_password(make_connection, make_credential,
                                                                             mail_servers, caplog) -> None:
    caplog.set_level("DEBUG")
    address, password = mail_servers.add_user()
    wrong = "Wrong-Pässwort-" + password[-6:]
    cred = make_credential(address, wrong, deploy_times=3)
    conn = make_connection("imap", "ssl_tls", "plain", address=address, password=password,
                           credential_name=cred.name)
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)

    assert not result.ok
    failed = result.failed_step
    assert failed["name"] == "auth"
    assert address in failed["message"] and cred.name in failed["message"] and "3" in failed["message"]
    assert failed["hint"]
    dumped = json.dumps(result.report, ensure_ascii=False)
    assert wrong not in dumped and password not in dumped
    conn.refresh_from_db()
    assert conn.last_test_ok is False and "auth" in conn.last_test_summary
    assert wrong not in conn.last_test_summary
    assert "FAILED" in caplog.text and wrong not in caplog.text and password not in caplog.text


def test_credential_problems_fail_before_any_network_step(make_connection, make_credential, mail_servers,
                                                          tenant) -> None:
    conn = make_connection("pop3", "ssl_tls", "plain", credential_name="does-not-exist")
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert _names(result) == ["credential"] and not result.ok
    assert "does-not-exist" in result.failed_step["message"] and result.failed_step["hint"]

    never = UserCredential.objects.create(tenant=tenant, name="never-deployed", username="x", password="p")
    conn = make_connection("imap", "ssl_tls", "plain", credential_name=never.name)
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert _names(result) == ["credential"] and "never been deployed" in result.failed_step["message"]

    conn = make_connection("imap", "ssl_tls", "plain")
    InboundConnection.objects.filter(pk=conn.pk).update(credential_name="")
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert _names(result) == ["credential"] and "Credential Name" in result.failed_step["hint"]
    conn.refresh_from_db()
    assert conn.last_test_ok is False and conn.last_test_report["steps"][0]["name"] == "credential"


def test_credential_of_another_tenant_is_not_used(make_connection, make_credential, mail_servers) -> None:
    from connections.models import Tenant

    other = Tenant.objects.create(name="Other", slug="other-tenant-x")
    address, password = mail_servers.add_user()
    foreign = make_credential(address, password, tenant_obj=other)
    conn = make_connection("imap", "ssl_tls", "plain", address=address, password=password,
                           credential_name=foreign.name)
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert _names(result) == ["credential"] and not result.ok


def test_smtp_check_addresses_reports_each_and_sends_nothing(make_connection, mail_servers) -> None:
    sender, sender_pw = mail_servers.add_user()
    rcpt, _ = mail_servers.add_user()
    conn = make_connection("smtp", "starttls_mandatory", "plain", address=sender, password=sender_pw)
    result = connectivity.probe_connection(
        connection=conn, check_addresses=[rcpt, f"nosuchuser@{mail_servers.domain}"], sender=sender)
    assert not result.ok
    step = result.failed_step
    assert step["name"] == "addresses"
    results = step["detail"]["results"]
    assert results[rcpt]["accepted"] is True and results[rcpt]["code"] == 250
    assert results[f"nosuchuser@{mail_servers.domain}"]["code"] == 550
    assert "nosuchuser" in step["message"]

    ok = connectivity.probe_connection(connection=conn, check_addresses=[rcpt])
    assert ok.ok and ok.report["sender"] == sender  # default: the connection's default From
    import time
    time.sleep(0.5)
    assert mail_servers.server_copies(rcpt) == {}  # RSET: nothing was sent


def test_check_addresses_is_smtp_only(make_connection) -> None:
    conn = make_connection("imap", "ssl_tls", "plain")
    with pytest.raises(ConfigurationError):
        connectivity.probe_connection(connection=conn, check_addresses=["a@example.test"])


def test_wrong_host_certificate_hint_and_chain(make_connection) -> None:
    conn = make_connection("pop3", "ssl_tls", "plain", listener="pop3s_wronghost")
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    failed = result.failed_step
    assert failed["name"] == "tls"
    assert "mail.example.org" in failed["message"] and "127.0.0.1" in failed["message"]
    cert = failed["detail"]["certificate"]
    assert cert["sans"] == ["mail.example.org"] and cert["chain_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert not any(s["name"] == "auth" for s in result.steps)  # the password was never offered


def test_warnings_for_plain_without_tls(make_connection, mail_servers) -> None:
    address, password = mail_servers.add_user()
    conn = make_connection("imap", "off", "plain", address=address, password=password,
                           allow_plain_without_tls=True)
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert result.ok
    assert any("allow plain login without TLS" in w for w in result.report["warnings"])


def test_store_false_leaves_the_connection_alone(make_connection) -> None:
    conn = make_connection("imap", "ssl_tls", "plain")
    connectivity.probe_connection(connection=conn, store=False)
    conn.refresh_from_db()
    assert conn.last_test_at is None and conn.last_test_report is None


def test_mail_settings_for(make_connection, mail_servers) -> None:
    conn = make_connection("imap", "starttls_optional", "encrypted", folder="Archive", timeout=7,
                           verify_certificate=False)
    cred = open_credential(conn)
    s = mail_settings_for(conn, credential=cred)
    assert (s.protocol, s.host, s.port, s.protection, s.authentication) == (
        "imap", mail_servers.host, conn.port, "starttls_optional", "encrypted")
    assert (s.username, s.credential_name, s.credential_version) == (cred.username, cred.name, cred.version)
    assert (s.timeout, s.folder, s.verify_certificate, s.trusted_ca) == (7.0, "Archive", False, conn.trusted_ca)
    assert cred.password not in repr(s)

    out = make_connection("smtp", "off", "none", port=None)
    assert open_credential(out) is None
    s = mail_settings_for(out, credential=None)
    assert (s.protocol, s.port, s.effective_port, s.username) == ("smtp", None, 25, "")

    pop = make_connection("pop3", "ssl_tls", "plain")
    InboundConnection.objects.filter(pk=pop.pk).update(authentication="none")
    pop.refresh_from_db()
    with pytest.raises(ConfigurationError, match="only for SMTP"):
        mail_settings_for(pop, credential=None)


def test_outbound_without_authentication(make_connection, mail_servers) -> None:
    conn = make_connection("smtp", "off", "none")
    result = run_connectivity_test(kind="outbound", connection_id=conn.pk)
    assert result.ok, result.summary
    assert result.steps[0]["skipped"] is True
    assert isinstance(OutboundConnection.objects.get(pk=conn.pk).last_test_report, dict)


def test_a_silent_server_fails_within_the_connection_timeout(make_connection) -> None:
    import socket
    import time

    # Accepts TCP (the kernel's backlog) but never says a word: the greeting must time out.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        conn = make_connection("imap", "ssl_tls", "plain", port=silent.getsockname()[1], timeout=1)
        started = time.monotonic()
        result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
        elapsed = time.monotonic() - started
    assert not result.ok and elapsed < 5
    failed = result.failed_step
    assert failed["name"] == "tls" and "no answer" in failed["message"] and "within 1 s" in failed["message"]
    conn.refresh_from_db()
    assert conn.last_test_ok is False


def test_unknown_host_fails_at_dns_with_a_hint(make_connection) -> None:
    conn = make_connection("smtp", "ssl_tls", "plain", host="no-such-host.invalid")
    result = run_connectivity_test(kind="outbound", connection_id=conn.pk)
    failed = result.failed_step
    assert failed["name"] == "dns" and "no-such-host.invalid" in failed["message"] and failed["hint"]
    assert [s["name"] for s in result.steps] == ["credential", "dns"]


def test_refused_port_fails_at_tcp_with_a_hint(make_connection) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    conn = make_connection("pop3", "ssl_tls", "plain", port=port)
    failed = run_connectivity_test(kind="inbound", connection_id=conn.pk).failed_step
    assert failed["name"] == "tcp" and str(port) in failed["message"] and failed["hint"]


def test_a_disabled_connection_is_tested_with_a_warning(make_connection) -> None:
    conn = make_connection("pop3", "ssl_tls", "encrypted", enabled=False)
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert result.ok and any("disabled" in w for w in result.report["warnings"])


@pytest.mark.parametrize("timeout, valid", [(0, False), (1, True), (30, True), (300, True), (301, False)])
@pytest.mark.parametrize("protocol", ["imap", "smtp"])
def test_connection_timeout_is_validated_from_1s_to_5min(make_connection, protocol, timeout, valid) -> None:
    from django.core.exceptions import ValidationError

    conn = make_connection(protocol, "ssl_tls", "plain")
    conn.timeout = timeout
    if valid:
        conn.full_clean()
        assert mail_settings_for(conn, credential=open_credential(conn)).timeout == float(timeout)
    else:
        with pytest.raises(ValidationError) as caught:
            conn.full_clean()
        assert "timeout" in caught.value.message_dict


def test_allow_plain_without_tls_is_a_warning_whatever_the_authentication(make_connection) -> None:
    from connections.services.setup.warnings import security_warnings, short_warnings

    conn = make_connection("imap", "ssl_tls", "encrypted", allow_plain_without_tls=True)
    assert any("allow plain login without TLS" in w for w in security_warnings(connection=conn))
    assert "plain login without TLS allowed" in short_warnings(connection=conn)
    conn.allow_plain_without_tls = False
    assert not any("plain login" in w for w in security_warnings(connection=conn)) and short_warnings(connection=conn) == []


@pytest.mark.parametrize("protocol, protection, port", [("imap", "ssl_tls", 993), ("pop3", "starttls_mandatory", 110),
                                                        ("smtp", "ssl_tls", 465)])
def test_an_empty_port_is_reported_as_the_default_even_when_the_credential_fails(
        make_connection, protocol, protection, port) -> None:
    conn = make_connection(protocol, protection, "plain", port=None, credential_name="no-such-credential")
    kind = "outbound" if protocol == "smtp" else "inbound"
    result = run_connectivity_test(kind=kind, connection_id=conn.pk)
    assert not result.ok and result.failed_step["name"] == "credential"
    assert result.report["connection"]["port"] == port
    assert f"{conn.host}:{port}:" in result.summary and "None" not in result.summary


def test_starttls_optional_is_a_warning(make_connection) -> None:
    from connections.services.setup.warnings import security_warnings

    conn = make_connection("imap", "starttls_optional", "encrypted")
    assert any("STARTTLS optional" in w and "unencrypted" in w for w in security_warnings(connection=conn))
    conn.protection = "starttls_mandatory"
    assert not any("STARTTLS optional" in w for w in security_warnings(connection=conn))
