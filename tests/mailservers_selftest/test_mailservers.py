"""Self-test of the real Dovecot + Postfix fixture, with the standard library clients used directly."""
from __future__ import annotations

import base64
import hashlib
import hmac
import imaplib
import os
import poplib
import smtplib
import socket
import ssl
import time

import pytest

from tests.mailservers import MailServers, start_mail_servers

pytestmark = pytest.mark.mailservers

IMAP_KEYS = ["imap", "imaps", "imap_notls", "imap_wronghost", "imaps_wronghost", "imaps_selfsigned", "imaps_expired",
             "imaps_noidle"]
POP3_KEYS = ["pop3", "pop3s", "pop3_notls", "pop3_wronghost", "pop3s_wronghost", "pop3s_selfsigned", "pop3s_expired"]
SMTP_KEYS = ["submission", "smtps", "smtp_notls", "smtps_wronghost", "submission_wronghost", "smtps_selfsigned",
             "smtps_expired"]


def _ctx(ms: MailServers, *, check_hostname: bool = True, cafile: str | None = None,
         cadata: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile or (None if cadata else ms.ca_file), cadata=cadata)
    ctx.check_hostname = check_hostname
    return ctx


def _unverified() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _implicit(key: str) -> bool:
    return key in ("imaps", "pop3s", "smtps") or "s_" in key  # imaps_*, pop3s_*, smtps_*


def test_every_documented_port_is_distinct_and_listening(mail_servers: MailServers) -> None:
    assert set(IMAP_KEYS + POP3_KEYS + SMTP_KEYS) == set(mail_servers.ports)
    assert len(set(mail_servers.ports.values())) == len(mail_servers.ports)
    for key, port in mail_servers.ports.items():
        socket.create_connection((mail_servers.host, port), timeout=3).close()


def test_startup_is_fast(mail_servers: MailServers) -> None:
    assert mail_servers.startup_seconds < 5


@pytest.mark.parametrize("key", ["imap", "imap_notls", "imap_wronghost"])
def test_imap_plain_listeners_offer_starttls_only_when_they_should(mail_servers: MailServers, key: str) -> None:
    with imaplib.IMAP4(mail_servers.host, mail_servers.ports[key], timeout=5) as conn:
        caps = set(conn.capabilities)
        assert "AUTH=CRAM-MD5" in caps and "AUTH=PLAIN" in caps
        assert ("STARTTLS" in caps) is (key != "imap_notls")
        assert {"IDLE", "LITERAL+", "SASL-IR"} <= caps


def test_imap_starttls_verifies_against_the_run_ca(mail_servers: MailServers) -> None:
    with imaplib.IMAP4(mail_servers.host, mail_servers.ports["imap"], timeout=5) as conn:
        conn.starttls(ssl_context=_ctx(mail_servers))
        cert = conn.sock.getpeercert()
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]


@pytest.mark.parametrize("key", ["pop3", "pop3_notls", "pop3_wronghost"])
def test_pop3_plain_listeners_offer_stls_only_when_they_should(mail_servers: MailServers, key: str) -> None:
    conn = poplib.POP3(mail_servers.host, mail_servers.ports[key], timeout=5)
    try:
        caps = conn.capa()
        assert ("STLS" in caps) is (key != "pop3_notls")
        assert "CRAM-MD5" in caps["SASL"] and "PLAIN" in caps["SASL"]
        assert "UIDL" in caps and "USER" in caps
        assert b"<" in conn.getwelcome()  # APOP timestamp
    finally:
        conn.quit()


@pytest.mark.parametrize("key", ["imaps", "pop3s", "smtps"])
def test_implicit_tls_listeners_verify_against_the_run_ca(mail_servers: MailServers, key: str) -> None:
    with socket.create_connection((mail_servers.host, mail_servers.ports[key]), timeout=5) as raw:
        with _ctx(mail_servers).wrap_socket(raw, server_hostname=mail_servers.host) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.recv(100)[:4] in (b"* OK", b"+OK ", b"220 ")


@pytest.mark.parametrize("key", ["imaps_wronghost", "pop3s_wronghost", "smtps_wronghost"])
def test_wrong_host_certificate_fails_host_name_check_only(mail_servers: MailServers, key: str) -> None:
    port = mail_servers.ports[key]
    with socket.create_connection((mail_servers.host, port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            _ctx(mail_servers).wrap_socket(raw, server_hostname=mail_servers.host)
    # The chain itself is the run's CA: without the host name check it verifies.
    with socket.create_connection((mail_servers.host, port), timeout=5) as raw:
        with _ctx(mail_servers, check_hostname=False).wrap_socket(raw) as tls:
            sans = tls.getpeercert()["subjectAltName"]
            assert sans == (("DNS", "mail.example.org"),)


@pytest.mark.parametrize("starttls_key", ["imap_wronghost", "pop3_wronghost", "submission_wronghost"])
def test_wrong_host_certificate_on_starttls_listeners(mail_servers: MailServers, starttls_key: str) -> None:
    port = mail_servers.ports[starttls_key]
    with pytest.raises(ssl.SSLCertVerificationError):
        if starttls_key.startswith("imap"):
            imaplib.IMAP4(mail_servers.host, port, timeout=5).starttls(ssl_context=_ctx(mail_servers))
        elif starttls_key.startswith("pop3"):
            poplib.POP3(mail_servers.host, port, timeout=5).stls(context=_ctx(mail_servers))
        else:
            smtplib.SMTP(mail_servers.host, port, timeout=5).starttls(context=_ctx(mail_servers))


@pytest.mark.parametrize("key", ["imaps_selfsigned", "pop3s_selfsigned", "smtps_selfsigned"])
def test_self_signed_is_rejected_unless_that_certificate_is_trusted(mail_servers: MailServers, key: str) -> None:
    port = mail_servers.ports[key]
    with socket.create_connection((mail_servers.host, port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="self.signed|unable to get local issuer"):
            _ctx(mail_servers).wrap_socket(raw, server_hostname=mail_servers.host)
    with socket.create_connection((mail_servers.host, port), timeout=5) as raw:
        ctx = _ctx(mail_servers, cadata=mail_servers.certs["selfsigned"])
        ctx.wrap_socket(raw, server_hostname=mail_servers.host).close()


@pytest.mark.parametrize("key", ["imaps_expired", "pop3s_expired", "smtps_expired"])
def test_expired_certificate_is_rejected(mail_servers: MailServers, key: str) -> None:
    with socket.create_connection((mail_servers.host, mail_servers.ports[key]), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            _ctx(mail_servers).wrap_socket(raw, server_hostname=mail_servers.host)


def test_submission_offers_auth_only_after_starttls(mail_servers: MailServers) -> None:
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["submission"], timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        smtp.starttls(context=_ctx(mail_servers))
        smtp.ehlo()
        assert set(smtp.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER"}
        assert smtp.has_extn("size") and smtp.has_extn("pipelining")


def test_smtp_notls_offers_auth_without_starttls(mail_servers: MailServers) -> None:
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["smtp_notls"], timeout=5) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        assert "CRAM-MD5" in smtp.esmtp_features["auth"]


def test_mail_sent_through_submission_is_readable_over_imap_and_pop3(mail_servers: MailServers) -> None:
    sender, sender_pw = mail_servers.add_user()
    rcpt, rcpt_pw = mail_servers.add_user()
    body = f"Subject: selftest\r\nFrom: {sender}\r\nTo: {rcpt}\r\n\r\nmarker-{time.time_ns()}\r\n".encode()
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["submission"], timeout=5) as smtp:
        smtp.starttls(context=_ctx(mail_servers))
        smtp.login(sender, sender_pw)
        assert smtp.sendmail(sender, [rcpt], body) == {}
    copies = mail_servers.wait_for_messages(rcpt)
    marker = body.split(b"\r\n\r\n")[1].strip()

    with imaplib.IMAP4_SSL(mail_servers.host, mail_servers.ports["imaps"], ssl_context=_ctx(mail_servers),
                           timeout=5) as imap:
        imap.login(rcpt, rcpt_pw)
        caps = set(imap.capability()[1][0].decode().split())
        assert {"MOVE", "UIDPLUS", "MULTIAPPEND", "IDLE"} <= caps
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(BODY.PEEK[])")
        assert marker in data[0][1]
        assert data[0][1] == next(iter(copies.values()))

    pop = poplib.POP3_SSL(mail_servers.host, mail_servers.ports["pop3s"], context=_ctx(mail_servers), timeout=5)
    try:
        pop.user(rcpt)
        pop.pass_(rcpt_pw)
        assert pop.stat()[0] == 1
        assert marker in b"\r\n".join(pop.retr(1)[1])
    finally:
        pop.quit()


def test_smtp_refuses_unknown_local_recipient_and_relaying(mail_servers: MailServers, mailbox) -> None:
    address, _ = mailbox
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["smtp_notls"], timeout=5) as smtp:
        smtp.ehlo()
        smtp.mail("someone@elsewhere.invalid")
        assert smtp.rcpt(address)[0] == 250
        code, msg = smtp.rcpt(f"nosuchuser@{mail_servers.domain}")
        assert code == 550 and b"unknown" in msg.lower()
        code, msg = smtp.rcpt("victim@elsewhere.invalid")
        assert code == 554 and b"Relay access denied" in msg
        smtp.rset()


def _cram(user: str, password: str, challenge_b64: bytes) -> bytes:
    challenge = base64.b64decode(challenge_b64)
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    return base64.b64encode(user.encode() + b" " + digest.encode())


def test_cram_md5_and_apop_with_utf8_user_and_password(mail_servers: MailServers) -> None:
    user, password = mail_servers.add_user(local="jörg.ümlaut", password="pä$$wörd:€ 🔑")
    mail_servers.append(user, [b"Subject: utf8\r\n\r\nx\r\n"])

    with imaplib.IMAP4(mail_servers.host, mail_servers.ports["imap_notls"], timeout=5) as imap:
        imap.authenticate("CRAM-MD5", lambda challenge: user.encode() + b" " + hmac.new(
            password.encode(), challenge, hashlib.md5).hexdigest().encode())
        assert imap.select("INBOX")[1] == [b"1"]

    pop = poplib.POP3(mail_servers.host, mail_servers.ports["pop3_notls"], timeout=5)
    try:
        pop._putcmd("AUTH CRAM-MD5")
        challenge = pop._getline()[0]
        assert challenge.startswith(b"+ ")
        assert pop._shortcmd(_cram(user, password, challenge[2:]).decode()).startswith(b"+OK")
        assert pop.stat()[0] == 1
    finally:
        pop.quit()

    pop = poplib.POP3(mail_servers.host, mail_servers.ports["pop3_notls"], timeout=5)
    try:
        pop.apop(user, password)
        assert pop.stat()[0] == 1
    finally:
        pop.quit()

    pop = poplib.POP3(mail_servers.host, mail_servers.ports["pop3_notls"], timeout=5)
    try:
        pop.user(user)
        pop.pass_(password)  # poplib sends UTF-8
        assert pop.stat()[0] == 1
    finally:
        pop.quit()

    with smtplib.SMTP(mail_servers.host, mail_servers.ports["smtp_notls"], timeout=5) as smtp:
        smtp.ehlo()
        code, challenge = smtp.docmd("AUTH", "CRAM-MD5")
        assert code == 334
        code, msg = smtp.docmd(_cram(user, password, challenge).decode())
        assert code == 235, msg
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["smtp_notls"], timeout=5) as smtp:
        smtp.ehlo()
        plain = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        assert smtp.docmd("AUTH", f"PLAIN {plain}")[0] == 235


@pytest.mark.parametrize("key", ["imap_notls", "imap", "imaps"])
def test_wrong_password_is_refused_by_imap(mail_servers: MailServers, mailbox, key: str) -> None:
    address, _ = mailbox
    cls = imaplib.IMAP4_SSL if key == "imaps" else imaplib.IMAP4
    kwargs = {"ssl_context": _ctx(mail_servers)} if key == "imaps" else {}
    with cls(mail_servers.host, mail_servers.ports[key], timeout=5, **kwargs) as imap:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(address, "wrong")


def test_wrong_password_is_refused_by_pop3_and_smtp(mail_servers: MailServers, mailbox) -> None:
    address, _ = mailbox
    pop = poplib.POP3(mail_servers.host, mail_servers.ports["pop3_notls"], timeout=5)
    pop.user(address)
    with pytest.raises(poplib.error_proto, match="AUTH"):
        pop.pass_("wrong")
    pop.close()
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["smtp_notls"], timeout=5) as smtp:
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(address, "wrong")


def test_append_server_copies_flags_and_folders(mail_servers: MailServers, mailbox) -> None:
    address, _ = mailbox
    mails = [f"Subject: m{i}\r\nMessage-ID: <m{i}@t>\r\n\r\nbody {i}\r\n".encode() for i in range(1200)]
    started = time.monotonic()
    mail_servers.append(address, mails)
    assert time.monotonic() - started < 10
    copies = mail_servers.server_copies(address)
    assert list(copies.values()) == mails
    assert list(copies) == list(range(1, 1201))
    assert not any(mail_servers.flags(address).values())

    mail_servers.append(address, [b"Subject: archived\r\n\r\nx\r\n"], folder="Archive.2026", seen=True)
    assert "Archive.2026" in mail_servers.folders(address)
    assert mail_servers.flags(address, folder="Archive.2026") == {1: {"\\Seen"}}


def test_append_keeps_8bit_and_tolerates_nul(mail_servers: MailServers, mailbox) -> None:
    address, _ = mailbox
    eight_bit = "Subject: Grüße\r\n\r\nÄÖÜ — 8bit body\r\n".encode()
    with_nul = b"Subject: nul\r\n\r\nbefore\0after\r\n"
    mail_servers.append(address, [eight_bit, with_nul])
    copies = list(mail_servers.server_copies(address).values())
    assert copies[0] == eight_bit
    assert len(copies) == 2 and b"before" in copies[1] and b"\0" not in copies[1]


def test_users_are_isolated(mail_servers: MailServers) -> None:
    a, _ = mail_servers.add_user()
    b, _ = mail_servers.add_user()
    mail_servers.append(a, [b"Subject: only a\r\n\r\n.\r\n"])
    assert len(mail_servers.server_copies(a)) == 1
    assert mail_servers.server_copies(b) == {}
    with pytest.raises(ValueError):
        mail_servers.add_user(local=a.split("@")[0])


def test_mail_settings_defaults(mail_servers: MailServers) -> None:
    s = mail_servers.mail_settings(protocol="smtp", protection="starttls_mandatory", authentication="plain",
                                   username="u")
    assert (s.host, s.port, s.trusted_ca) == (mail_servers.host, mail_servers.ports["submission"],
                                              mail_servers.ca_pem)
    s = mail_servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="encrypted",
                                   username="u", listener="imaps_wronghost", timeout=3)
    assert s.port == mail_servers.ports["imaps_wronghost"] and s.timeout == 3
    assert mail_servers.mail_settings(protocol="pop3", protection="off", authentication="plain",
                                      username="u").port == mail_servers.ports["pop3_notls"]


def test_stop_leaves_no_daemon_and_no_files() -> None:
    servers = start_mail_servers()
    pids = [p.pid for p in servers._procs]
    root = servers.root
    servers.stop()
    time.sleep(0.2)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # No process of this instance is left: every child stays in its master's process group.
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                state, pgrp = fields[0], int(fields[2])
            except (OSError, ValueError, IndexError):
                continue
            if pgrp in pids and state != "Z":  # exited children wait for pid 1 to reap them
                leftovers.append(entry)
    assert leftovers == []
    assert not root.exists()


def test_users_added_in_quick_succession_are_known_to_a_running_smtpd(mail_servers: MailServers) -> None:
    for _ in range(3):
        address, _ = mail_servers.add_user()
        with smtplib.SMTP(mail_servers.host, mail_servers.ports["smtp_notls"], timeout=5) as smtp:
            smtp.ehlo()
            smtp.mail("someone@elsewhere.invalid")
            assert smtp.rcpt(address)[0] == 250


def test_a_killed_test_process_leaves_no_daemon() -> None:
    """Even SIGKILL of the test process (no finalizer runs) stops the servers."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import os, signal, sys; sys.path.insert(0, %r)\n"
        "from tests.mailservers import start_mail_servers\n"
        "s = start_mail_servers()\n"
        "print(' '.join(str(p.pid) for p in s._procs), s.root, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    ) % str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    *pids, root = done.stdout.split()
    pids = [int(p) for p in pids]
    assert len(pids) == 7  # the Dovecot instances (one without IDLE) and Postfix's master
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        alive.append(pid)
            except OSError:
                pass
    assert alive == []
    # Nor any of their children (logins, smtpd, qmgr, ...): each stays in its master's group.
    deadline = time.monotonic() + 5
    while _live_members_of(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_members_of(pids) == []
    import shutil
    shutil.rmtree(root, ignore_errors=True)


def _live_members_of(groups: list[int]) -> list[str]:
    """Processes (not zombies) whose process group is one of `groups`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in groups and fields[0] != "Z":
                found.append(entry)
    return found


def test_servers_started_from_a_thread_outlive_that_thread() -> None:
    """PDEATHSIG belongs to the starting thread: a helper thread that ends must not stop them."""
    import threading

    box = {}
    starter = threading.Thread(target=lambda: box.update(servers=start_mail_servers()))
    starter.start()
    starter.join(60)
    servers = box["servers"]
    try:
        time.sleep(0.5)
        assert all(p.poll() is None for p in servers._procs)
        with imaplib.IMAP4(servers.host, servers.ports["imap_notls"], timeout=5) as imap:
            assert imap.noop()[0] == "OK"
    finally:
        servers.stop()
