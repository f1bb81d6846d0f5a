"""run_probe(): the connectivity test, against the real servers and scripted faults."""
from __future__ import annotations

import json
import socket
import time

import pytest

from connections.mail import MailSettings, run_probe

from .test_imap import mail

pytestmark = pytest.mark.mailservers

SECRET = "Pröbe-Secret-✓-42"


def names(report) -> list[str]:
    return [s.name for s in report.steps]


def as_json(report) -> str:
    text = json.dumps(report.to_dict())
    assert SECRET not in text and SECRET.encode("utf-8").hex() not in text
    return text


@pytest.fixture(scope="module")
def account(mail_servers):
    address, password = mail_servers.add_user(password=SECRET)
    mail_servers.append(address, [mail(1), mail(2)])
    mail_servers.append(address, [mail(3)], seen=True)
    return address, password


def test_imap_probe_passes_with_every_step(mail_servers, account):
    address, password = account
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain", username=address)
    report = run_probe(settings, password)
    as_json(report)
    assert report.ok, report.summary
    assert names(report) == ["dns", "tcp", "tls", "greeting", "capabilities", "auth", "folders", "folder", "status"]
    by = {s.name: s for s in report.steps}
    assert all(s.duration_ms >= 0 for s in report.steps)
    assert by["dns"].detail["addresses"] == ["127.0.0.1"]
    tls = by["tls"].detail
    assert tls["verified"] and tls["version"].startswith("TLSv1.") and "127.0.0.1" in tls["sans"]
    assert "BEGIN CERTIFICATE" in tls["chain_pem"] and tls["days_left"] > 0 and tls["issuer"]
    assert {"IDLE", "AUTH=CRAM-MD5"} <= set(by["capabilities"].detail["capabilities"])
    assert {"MOVE", "UIDPLUS"} <= set(by["auth"].detail["capabilities_after_login"])
    features = by["capabilities"].detail["features"]
    assert features["idle"] and features["move"] and features["uidplus"] and features["starttls"] is False
    assert set(features["auth"]) >= {"PLAIN", "LOGIN", "CRAM-MD5"}
    assert by["auth"].detail["user"] == address and by["auth"].detail["mechanism"] == "PLAIN"
    assert "INBOX" in by["folders"].detail["folders"] and by["folders"].detail["separator"] == "."
    assert by["folder"].detail["exists"] is True
    assert by["status"].detail["messages"] == 3 and by["status"].detail["unseen"] == 2
    assert "3 messages" in report.summary and "passed" in report.summary


def test_imap_probe_with_starttls_orders_steps_and_reports_missing_folder(mail_servers, account):
    address, password = account
    settings = mail_servers.mail_settings(
        protocol="imap", protection="starttls_mandatory", authentication="encrypted", username=address, folder="Archiv"
    )
    report = run_probe(settings, password)
    as_json(report)
    assert not report.ok
    assert names(report)[:6] == ["dns", "tcp", "greeting", "tls", "capabilities", "auth"]
    failed = report.failed_step
    assert failed.name == "folder" and "'Archiv' does not exist" in failed.message
    assert "INBOX" in failed.hint
    assert "STARTTLS" in report.steps[3].detail["mode"] and report.steps[3].detail["verified"]


def test_pop3_probe(mail_servers, account):
    address, password = account
    settings = mail_servers.mail_settings(protocol="pop3", protection="starttls_mandatory", authentication="plain", username=address)
    report = run_probe(settings, password)
    as_json(report)
    assert report.ok, report.summary
    assert names(report) == ["dns", "tcp", "greeting", "tls", "capabilities", "auth", "stat", "uidl"]
    by = {s.name: s for s in report.steps}
    assert by["stat"].detail["messages"] == 3 and by["stat"].detail["size"] > 0
    assert by["uidl"].detail["supported"] is True
    features = by["capabilities"].detail["features"]
    assert features["starttls"] and features["uidl"] and features["apop"] and "CRAM-MD5" in features["auth"]
    assert "STLS" in by["tls"].detail["mode"] and "STLS" in by["capabilities"].detail["capabilities_before_tls"]
    assert report.summary.endswith(", 3 messages)")


def test_summary_counts_one_message_in_the_singular(mail_servers, mailbox):
    address, password = mailbox
    mail_servers.append(address, [b"Subject: one\r\n\r\nx\r\n"])
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address)
    report = run_probe(settings, password)
    assert report.ok and report.summary.endswith(", 1 message)"), report.summary


def test_smtp_probe_checks_addresses_and_sends_nothing(mail_servers, account):
    address, password = account
    unknown = f"nobody-probe@{mail_servers.domain}"
    settings = mail_servers.mail_settings(protocol="smtp", protection="starttls_mandatory", authentication="encrypted", username=address)
    good = run_probe(settings, password, check_addresses=[address])
    as_json(good)
    assert good.ok, good.summary
    assert names(good) == ["dns", "tcp", "greeting", "tls", "capabilities", "auth", "addresses"]
    extensions = {s.name: s for s in good.steps}["capabilities"].detail["extensions"]
    assert {"pipelining", "size", "auth"} <= set(extensions) and "CRAM-MD5" in extensions["auth"]
    assert "starttls" in {s.name: s for s in good.steps}["capabilities"].detail["extensions_before_tls"]
    features = {s.name: s for s in good.steps}["capabilities"].detail["features"]
    assert features["starttls"] and features["pipelining"] and features["size"] > 0
    assert "CRAM-MD5" in features["auth"]
    bad = run_probe(settings, password, check_addresses=[address, unknown], sender=address)
    assert not bad.ok and bad.failed_step.name == "addresses"
    assert unknown in bad.failed_step.message and "550" in bad.failed_step.message
    results = bad.failed_step.detail["results"]
    assert results[address]["accepted"] and not results[unknown]["accepted"]
    time.sleep(0.3)
    assert len(mail_servers.server_copies(address)) == 3  # nothing was delivered


def test_smtp_auth_only_after_starttls_hint(mail_servers, account):
    address, password = account
    settings = mail_servers.mail_settings(
        protocol="smtp", protection="off", authentication="plain", username=address, listener="submission",
        allow_plain_without_tls=True,
    )
    report = run_probe(settings, password)
    assert not report.ok and report.failed_step.name == "auth"
    assert report.failed_step.message == "the server offers AUTH only after STARTTLS"
    assert report.failed_step.hint == "set protection to STARTTLS mandatory"
    tls = {s.name: s for s in report.steps}["tls"]
    assert tls.skipped and "STARTTLS mandatory" in tls.hint


def test_auth_failure_names_user_credential_and_version(mail_servers, account):
    address, _ = account
    settings = mail_servers.mail_settings(
        protocol="imap", protection="ssl_tls", authentication="plain", username=address,
        credential_name="support-inbox", credential_version=3,
    )
    report = run_probe(settings, SECRET + "-wrong")
    text = as_json(report)
    assert SECRET + "-wrong" not in text
    assert not report.ok and report.failed_step.name == "auth"
    assert f"authentication failed for user {address} with credential 'support-inbox' (deployed version 3)" in report.failed_step.message
    assert "support-inbox" in report.failed_step.hint


def test_wrong_host_certificate_in_the_report(mail_servers, account):
    address, password = account
    settings = mail_servers.mail_settings(
        protocol="pop3", protection="ssl_tls", authentication="plain", username=address, listener="pop3s_wronghost"
    )
    report = run_probe(settings, password)
    as_json(report)
    assert not report.ok and report.failed_step.name == "tls"
    assert report.failed_step.message == "certificate is for mail.example.org, not 127.0.0.1"
    certificate = report.failed_step.detail["certificate"]
    assert certificate["sans"] == ["mail.example.org"] and "BEGIN CERTIFICATE" in certificate["chain_pem"]
    assert certificate["verified"] is False and certificate["verify_error"]


def test_unencrypted_connection_with_starttls_available_is_flagged(mail_servers, account):
    address, password = account
    settings = mail_servers.mail_settings(
        protocol="imap", protection="off", authentication="encrypted", username=address, listener="imap"
    )
    report = run_probe(settings, password)
    assert report.ok, report.summary
    tls = {s.name: s for s in report.steps}["tls"]
    assert tls.skipped and tls.hint == "the server offers STARTTLS: set protection to STARTTLS mandatory"
    assert "not encrypted" in report.summary


def test_plain_refusal_in_the_report(mail_servers, account):
    address, password = account
    settings = mail_servers.mail_settings(protocol="pop3", protection="off", authentication="plain", username=address)
    report = run_probe(settings, password)
    assert not report.ok and report.failed_step.name == "auth"
    assert "password was not sent" in report.failed_step.message


def test_missing_credential(mail_servers, account):
    address, _ = account
    settings = mail_servers.mail_settings(
        protocol="imap", protection="ssl_tls", authentication="plain", username=address, credential_name="nope"
    )
    report = run_probe(settings, None)
    assert not report.ok and report.failed_step.name == "auth" and "'nope'" in report.failed_step.message


def test_dns_failure():
    settings = MailSettings(protocol="imap", host="no-such-host.invalid", protection="ssl_tls", username="u", timeout=5)
    report = run_probe(settings, "pw")
    as_json(report)
    assert not report.ok and names(report) == ["dns"]
    assert "cannot resolve host name 'no-such-host.invalid'" in report.failed_step.message
    assert report.failed_step.hint


def test_connection_refused():
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]  # bound but not listening: refused
        settings = MailSettings(protocol="smtp", host="127.0.0.1", port=port, protection="ssl_tls", authentication="none", timeout=5)
        report = run_probe(settings, None)
    assert not report.ok and names(report) == ["dns", "tcp"]
    assert "refused" in report.failed_step.message and "465" in report.failed_step.hint


def test_every_failed_step_has_a_hint(scripted):
    def odd_imap(conn):
        conn.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            tag, _, rest = line.decode().partition(" ")
            verb = rest.split(" ", 1)[0].upper().strip()
            if verb == "CAPABILITY":
                conn.send(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n{tag} OK done\r\n")
            elif verb == "AUTHENTICATE":
                conn.send(f"{tag} OK logged in\r\n")
            elif verb == "LIST":
                conn.send(f"{tag} NO [SERVERBUG] Internal error\r\n")
            else:
                conn.send(f"* BYE\r\n{tag} OK bye\r\n")
                return

    server = scripted(odd_imap)
    settings = MailSettings(protocol="imap", host=server.host, port=server.port, protection="off",
                            username="u", timeout=5, allow_plain_without_tls=True)
    report = run_probe(settings, "pw")
    assert not report.ok and report.failed_step.name == "folders"
    assert "Internal error" in report.failed_step.message and report.failed_step.hint


def test_greeting_timeout(scripted):
    server = scripted(lambda conn: time.sleep(4))
    settings = MailSettings(protocol="pop3", host=server.host, port=server.port, protection="off", username="u", timeout=1)
    started = time.monotonic()
    report = run_probe(settings, "pw")
    assert time.monotonic() - started < 3
    assert not report.ok and report.failed_step.name == "greeting"
    assert "within 1 s" in report.failed_step.message


def test_imap_extensions_unseen_before_a_failed_login_are_unknown_not_absent(mail_servers, mailbox):
    address, _ = mailbox
    settings = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain",
                                          username=address)
    report = run_probe(settings, "not-the-password")
    assert not report.ok and report.failed_step.name == "auth"
    features = next(s for s in report.steps if s.name == "capabilities").detail["features"]
    # Dovecot announces MOVE and UIDPLUS only after login: unknown here, not "no".
    assert features["move"] is None and features["uidplus"] is None and features["idle"] is True
