"""`manage.py test_connection`: exit codes, text and --json output, options; the secret never shows."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db_connection

pytestmark = pytest.mark.mailservers

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("test_connection", *args, stdout=out, stderr=err, no_color=True)
        code = 0
    except SystemExit as exc:
        code = exc.code
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_pass_prints_every_step_with_duration_and_details(make_connection, tenant, mail_servers) -> None:
    address, password = mail_servers.add_user()
    conn = make_connection("imap", "starttls_mandatory", "encrypted", address=address, password=password)
    code, out, _ = run(tenant.slug, conn.name)
    assert code == 0, out
    for step in ("credential", "dns", "tcp", "tls", "greeting", "capabilities", "auth", "folders", "folder",
                 "status"):
        assert f"[ ok ] {step}" in out
    assert " ms" in out and "mechanism: CRAM-MD5" in out and "STARTTLS" in out
    after_login = next(line for line in out.splitlines() if "capabilities after login:" in line)
    assert "MOVE" in after_login and "UIDPLUS" in after_login and "IDLE" in after_login
    assert "issuer: CN=TenantMail Test CA" in out and "days left:" in out and "verified: yes" in out
    # The capabilities the issue names, in one readable line (after login, where IMAP tells more).
    features = next(line for line in out.splitlines() if "features:" in line)
    for word in ("STARTTLS yes", "AUTH CRAM-MD5 LOGIN OAUTHBEARER PLAIN XOAUTH2", "IDLE yes", "MOVE yes", "UIDPLUS yes"):
        assert word in features, features
    assert out.strip().splitlines()[-1].startswith("PASS: ")
    assert "protection STARTTLS mandatory, authentication Encrypted user/password" in out.splitlines()[0]
    assert password not in out
    conn.refresh_from_db()
    assert conn.last_test_ok is True


@pytest.mark.django_db
def test_failure_exits_1_with_hint_and_no_secret(make_connection, make_credential, tenant, mail_servers) -> None:
    address, password = mail_servers.add_user(password="Geheim-Wört-42")
    wrong = "Falsch-Wört-43"
    cred = make_credential(address, wrong, deploy_times=2)
    conn = make_connection("smtp", "ssl_tls", "plain", address=address, password=password, credential_name=cred.name)
    code, out, err = run(tenant.slug, conn.name)
    assert code == 1
    assert "[FAIL] auth" in out and "hint:" in out and cred.name in out and address in out
    assert out.strip().splitlines()[-1].startswith("FAIL: ")
    assert wrong not in out + err and password not in out + err

    code, out, err = run(tenant.slug, conn.name, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and wrong not in out + err


@pytest.mark.django_db
def test_json_shape(make_connection, tenant) -> None:
    conn = make_connection("pop3", "ssl_tls", "plain")
    code, out, _ = run(tenant.slug, conn.name, "--json")
    assert code == 0
    report = json.loads(out)
    assert {"ok", "summary", "tested_at", "duration_ms", "connection", "warnings", "steps"} <= set(report)
    assert report["ok"] is True
    assert {"kind", "name", "tenant", "protocol", "host", "port", "protection", "authentication",
            "credential_name"} <= set(report["connection"])
    assert report["connection"]["kind"] == "inbound" and report["connection"]["tenant"] == tenant.slug
    for step in report["steps"]:
        assert set(step) >= {"name", "ok", "duration_ms", "detail", "message", "hint"}
    assert [s["name"] for s in report["steps"]][-2:] == ["stat", "uidl"]


@pytest.mark.django_db
def test_lookup_errors_exit_2(make_connection, tenant) -> None:
    make_connection("imap", "ssl_tls", "plain", name="both")
    make_connection("smtp", "ssl_tls", "plain", name="both")
    code, _, err = run(tenant.slug, "both")
    assert code == 2 and "--kind" in err
    assert run(tenant.slug, "both", "--kind", "outbound")[0] == 0
    code, out, _ = run(tenant.slug, "both", "--kind", "inbound", "--json")
    assert code == 0 and json.loads(out)["connection"]["kind"] == "inbound"
    code, out, err = run(tenant.slug, "nope", "--json")
    assert code == 2 and json.loads(out)["ok"] is False and "nope" in json.loads(out)["error"]
    assert run("no-such-tenant", "both")[0] == 2


@pytest.mark.django_db
def test_check_address_and_from(make_connection, tenant, mail_servers) -> None:
    sender, sender_pw = mail_servers.add_user()
    rcpt, _ = mail_servers.add_user()
    conn = make_connection("smtp", "starttls_mandatory", "plain", address=sender, password=sender_pw)
    code, out, _ = run(tenant.slug, conn.name, "--check-address", rcpt, "--from", sender)
    assert code == 0 and f"{rcpt}: accepted (250" in out
    code, out, _ = run(tenant.slug, conn.name, "--check-address", rcpt,
                       "--check-address", f"ghost@{mail_servers.domain}", "--json")
    assert code == 1
    step = json.loads(out)["steps"][-1]
    assert step["name"] == "addresses" and step["detail"]["results"][f"ghost@{mail_servers.domain}"]["code"] == 550
    code, out, err = run(tenant.slug, make_connection("imap", "ssl_tls", "plain").name, "--check-address", rcpt)
    assert code == 2 and "SMTP" in err


@pytest.mark.django_db
def test_no_store(make_connection, tenant) -> None:
    conn = make_connection("imap", "ssl_tls", "plain")
    assert run(tenant.slug, conn.name, "--no-store")[0] == 0
    conn.refresh_from_db()
    assert conn.last_test_at is None


@pytest.mark.django_db(transaction=True)
def test_real_process_exit_codes(make_connection, tenant, mail_servers) -> None:
    """The command as operators run it: a separate process, its real exit status."""
    good = make_connection("imap", "ssl_tls", "plain")
    bad = make_connection("imap", "ssl_tls", "plain", listener="imaps_selfsigned")
    db = db_connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings",
               DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}")

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", "test_connection", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    ok = manage(tenant.slug, good.name)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    failed = manage(tenant.slug, bad.name, "--json")
    assert failed.returncode == 1
    tls = next(s for s in json.loads(failed.stdout)["steps"] if s["name"] == "tls")
    assert not tls["ok"] and tls["hint"]
    assert manage(tenant.slug, "missing").returncode == 2


@pytest.mark.django_db
def test_verbosity_0_prints_one_line_and_2_the_chain(make_connection, tenant) -> None:
    conn = make_connection("imap", "ssl_tls", "plain")
    code, out, _ = run(tenant.slug, conn.name, "-v", "0")
    assert code == 0 and len(out.strip().splitlines()) == 1 and out.startswith("PASS: ")
    code, out, _ = run(tenant.slug, conn.name, "-v", "2")
    assert code == 0 and "-----BEGIN CERTIFICATE-----" in out
    code, out, _ = run(tenant.slug, conn.name)
    assert code == 0 and "-----BEGIN CERTIFICATE-----" not in out  # verified: no need to show it


@pytest.mark.django_db
def test_all_connections_of_a_tenant(make_connection, tenant) -> None:
    a = make_connection("imap", "ssl_tls", "plain")
    b = make_connection("smtp", "ssl_tls", "encrypted")
    code, out, _ = run(tenant.slug, "--all")
    assert code == 0 and "2 of 2 connections passed" in out and a.name in out and b.name in out
    bad = make_connection("pop3", "ssl_tls", "plain", listener="pop3s_expired")
    code, out, _ = run(tenant.slug, "--all", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False and [r["ok"] for r in data["results"]].count(False) == 1
    assert {r["connection"]["name"] for r in data["results"]} == {a.name, b.name, bad.name}
    code, out, _ = run(tenant.slug, "--all", "--kind", "outbound")
    assert code == 0 and "1 of 1 connections passed" in out
    code, out, _ = run(tenant.slug, "--all", "-v", "0")
    assert code == 1 and f"failed: {bad.name}" in out and len(out.strip().splitlines()) == 4
    assert run(tenant.slug)[0] == 2  # neither a name nor --all
    assert run(tenant.slug, a.name, "--all")[0] == 2


@pytest.mark.django_db
def test_smtp_features_and_ehlo_lines_read_like_ehlo(make_connection, tenant) -> None:
    conn = make_connection("smtp", "starttls_mandatory", "plain")
    code, out, _ = run(tenant.slug, conn.name)
    assert code == 0, out
    features = next(line for line in out.splitlines() if "features:" in line)
    for word in ("STARTTLS yes", "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2 OAUTHBEARER", "SIZE 52428800", "PIPELINING yes"):
        assert word in features, features
    extensions = next(line for line in out.splitlines() if "extensions:" in line)
    assert "PIPELINING, SIZE 52428800" in extensions and "=" not in extensions


@pytest.mark.django_db
def test_details_line_up_under_the_step_message(make_connection, tenant) -> None:
    conn = make_connection("imap", "ssl_tls", "plain", listener="imaps_wronghost")
    code, out, _ = run(tenant.slug, conn.name)
    assert code == 1
    lines = out.splitlines()
    failed = next(line for line in lines if "[FAIL] tls" in line)
    column = failed.index("certificate is for")
    hint = next(line for line in lines if "hint:" in line)
    assert hint.index("hint:") == column and hint[:column].strip() == ""
    # Trusting the certificate cannot fix a wrong name: the chain is shown without that advice.
    chain_caption = next(line for line in lines if "certificate chain (PEM)" in line)
    assert "trust" not in chain_caption


@pytest.mark.django_db
def test_plain_without_tls_is_a_warning_in_the_output(make_connection, tenant) -> None:
    conn = make_connection("imap", "off", "plain", allow_plain_without_tls=True)
    code, out, _ = run(tenant.slug, conn.name)
    assert code == 0, out
    warning = next(line for line in out.splitlines() if "allow plain login without TLS" in line)
    assert "warning" in warning
    code, out, _ = run(tenant.slug, conn.name, "--json")
    assert any("allow plain login without TLS" in w for w in json.loads(out)["warnings"])
