"""IMAPClient against the real Dovecot of the fixture, and a scripted server for faults."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tempfile
import time
import tracemalloc

import pytest

from connections.mail import IMAPClient, MailSettings
from connections.mail.errors import (
    AuthenticationFailed,
    ConnectError,
    InsecureAuthRefused,
    MechanismUnavailable,
    ProtocolError,
    TLSError,
)
from tests.mailcorpus import corpus_files

pytestmark = pytest.mark.mailservers


def corpus_mails() -> list[bytes]:
    """The corpus of tests/mailcorpus: generated mails, plus the public corpus when present."""
    return [p.read_bytes() for p in corpus_files()]


def mail(i: int, size: int = 0) -> bytes:
    body = (f"line {i}\r\n" + "x" * 70 + "\r\n") * max(1, size // 80)
    return f"From: a@example.test\r\nSubject: mail {i}\r\nMessage-ID: <{i}@t>\r\n\r\n{body}".encode()


def imap_settings(mail_servers, address, protection="ssl_tls", authentication="plain", **kw) -> MailSettings:
    return mail_servers.mail_settings(protocol="imap", protection=protection, authentication=authentication, username=address, **kw)


@pytest.mark.parametrize(
    "protection, authentication, mechanism, expected",
    [
        ("ssl_tls", "plain", None, "PLAIN"),
        ("ssl_tls", "plain", "LOGIN", "LOGIN"),
        ("starttls_mandatory", "plain", None, "PLAIN"),
        ("starttls_mandatory", "encrypted", None, "CRAM-MD5"),
        ("ssl_tls", "encrypted", None, "CRAM-MD5"),
        ("off", "encrypted", None, "CRAM-MD5"),
        ("starttls_optional", "plain", None, "PLAIN"),
    ],
)
def test_login_methods_with_utf8_credentials(mail_servers, protection, authentication, mechanism, expected):
    address, password = mail_servers.add_user(local="jürgen.ü" + os.urandom(3).hex(), password="Pässwörd ✓ \"quoted\" \\ €")
    settings = imap_settings(mail_servers, address, protection, authentication)
    with IMAPClient(settings, password, mechanism=mechanism) as imap:
        assert imap.auth_mechanism == expected
        assert imap.encrypted is (protection != "off")
        assert "IMAP4REV1" in imap.capabilities
        if protection.startswith("starttls"):
            assert "STARTTLS" in imap.capabilities_before_tls and imap.tls_info.verified
        assert imap.select("INBOX").exists == 0


def test_wrong_password(mail_servers):
    address, _ = mail_servers.add_user()
    settings = imap_settings(mail_servers, address, credential_name="inbox-cred", credential_version=2)
    with pytest.raises(AuthenticationFailed) as info:
        IMAPClient(settings, "not-the-password").__enter__()
    assert "credential 'inbox-cred' (deployed version 2)" in info.value.message
    assert "not-the-password" not in str(info.value)


def test_plain_refused_without_tls_and_starttls_rules(mail_servers):
    address, password = mail_servers.add_user()
    with pytest.raises(InsecureAuthRefused) as info:
        IMAPClient(imap_settings(mail_servers, address, "off"), password).__enter__()
    assert "STARTTLS" not in info.value.hint or "offers STARTTLS" not in info.value.hint  # notls offers none
    # STARTTLS optional against a server without STARTTLS: unencrypted, so refused as well.
    optional = imap_settings(mail_servers, address, "starttls_optional", listener="imap_notls")
    with pytest.raises(InsecureAuthRefused):
        IMAPClient(optional, password).__enter__()
    mandatory = imap_settings(mail_servers, address, "starttls_mandatory", listener="imap_notls")
    with pytest.raises(TLSError) as tls_info:
        IMAPClient(mandatory, password).__enter__()
    assert "does not offer STARTTLS" in tls_info.value.message
    # Off against the STARTTLS listener: the hint says to use it.
    off_on_starttls = imap_settings(mail_servers, address, "off", listener="imap")
    with pytest.raises(InsecureAuthRefused) as info:
        IMAPClient(off_on_starttls, password).__enter__()
    assert "STARTTLS mandatory" in info.value.hint
    allowed = imap_settings(mail_servers, address, "off", allow_plain_without_tls=True)
    with IMAPClient(allowed, password) as imap:
        assert not imap.encrypted


def test_folders_select_status_search_and_flags(mail_servers):
    address, password = mail_servers.add_user()
    mail_servers.append(address, [mail(i) for i in range(5)])
    mail_servers.append(address, [mail(10)], seen=True)
    names = ["Entwürfe", "With Space", "Archive.2026", "Tom & Jerry"]
    with IMAPClient(imap_settings(mail_servers, address), password) as imap:
        for name in names:
            imap.create_folder(name)
        imap.create_folder(names[0])  # exists already: no error
        folders = imap.list_folders()
        assert set(names) | {"INBOX", "Archive"} <= set(folders)
        assert imap.separator == "."
        details = {f.name: f for f in imap.list_folder_details()}
        assert details["Archive"].flags and details["INBOX"].selectable

        status = imap.status("INBOX")
        assert status["messages"] == 6 and status["unseen"] == 5 and status["uidvalidity"] > 0
        info = imap.select("INBOX")
        assert info.exists == 6 and info.uidvalidity == status["uidvalidity"] and info.uidnext == 7
        assert imap.search_uids(unseen_only=False) == [1, 2, 3, 4, 5, 6]
        assert imap.search_uids(unseen_only=True) == [1, 2, 3, 4, 5]
        assert imap.search_uids(unseen_only=False, min_uid=5) == [5, 6]
        assert imap.search_uids(unseen_only=False, min_uid=7) == []

        imap.mark_seen([1, 2])
        assert imap.search_uids(unseen_only=True) == [3, 4, 5]
        assert imap.status("Entwürfe")["messages"] == 0
        with pytest.raises(ProtocolError) as missing:
            imap.select("No such folder")
        assert "No such folder" in missing.value.message
    flags = mail_servers.flags(address)
    assert "\\Seen" in flags[1] and "\\Seen" not in flags[3]


def test_fetch_many_and_fetch_to_are_byte_exact_for_the_whole_corpus(mail_servers):
    address, password = mail_servers.add_user()
    mails = corpus_mails()
    mail_servers.append(address, mails)
    copies = mail_servers.server_copies(address)
    assert len(copies) == len(mails)
    with IMAPClient(imap_settings(mail_servers, address), password) as imap:
        imap.select("INBOX", readonly=True)
        uids = imap.search_uids(unseen_only=False)
        fetched = dict(imap.fetch_many(uids, batch_size=50))
        assert fetched == copies
        sizes = imap.fetch_sizes(uids)
        assert sizes == {uid: len(raw) for uid, raw in copies.items()}
        # Partial fetches with small odd chunks stitch together to the same bytes.
        for uid in uids[:40] + [max(copies, key=lambda u: len(copies[u]))]:
            sink = io.BytesIO()
            written = imap.fetch_to(uid, sink, chunk_size=4093)
            assert written == len(copies[uid]) and sink.getvalue() == copies[uid]
            sink = io.BytesIO()
            imap.fetch_to(uid, sink, size=sizes[uid])
            assert sink.getvalue() == copies[uid]
        with pytest.raises(ProtocolError) as gone:
            imap.fetch_to(max(uids) + 100, io.BytesIO())
        assert "no longer on the server" in gone.value.message
        # A chunk size that divides a mail exactly ends on an empty partial answer.
        exact = uids[1]
        sink = io.BytesIO()
        assert imap.fetch_to(exact, sink, chunk_size=len(copies[exact])) == len(copies[exact])
        assert sink.getvalue() == copies[exact]
        header = imap.fetch_header(uids[0])
        assert copies[uids[0]].startswith(header) and header.endswith(b"\r\n\r\n")
    assert mail_servers.flags(address)[uids[0]] == set()  # BODY.PEEK: nothing marked seen


def test_fetch_to_streams_a_20mb_mail_with_bounded_memory(mail_servers):
    address, password = mail_servers.add_user()
    payload = base64.encodebytes(os.urandom(15 * 1024 * 1024)).replace(b"\n", b"\r\n")
    big = (
        b"From: a@example.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + payload
    )
    assert len(big) > 20_000_000
    mail_servers.append(address, [big])
    expected = hashlib.sha256(big).hexdigest()
    size = len(big)
    del big, payload
    with IMAPClient(imap_settings(mail_servers, address), password) as imap, tempfile.TemporaryFile() as sink:
        imap.select("INBOX")
        uid = imap.search_uids(unseen_only=False)[0]
        server_size = imap.fetch_sizes([uid])[uid]
        assert server_size == size
        tracemalloc.start()
        try:
            written = imap.fetch_to(uid, sink, size=server_size)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert written == size
        assert peak < 5 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte mail"
        sink.seek(0)
        digest = hashlib.sha256()
        for block in iter(lambda: sink.read(1 << 20), b""):
            digest.update(block)
        assert digest.hexdigest() == expected


def test_mail_expunged_by_another_client_during_a_streamed_fetch(mail_servers):
    address, password = mail_servers.add_user()
    mail_servers.append(address, [mail(1, 300_000)])

    class ExpungingSink(io.BytesIO):
        def write(self, data):
            if not self.tell():  # after the first chunk: another client deletes the mail
                other = mail_servers._imap(address)
                other.select("INBOX")
                other.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
                other.expunge()
                other.logout()
            return super().write(data)

    original = mail_servers.server_copies(address)[1]
    with IMAPClient(imap_settings(mail_servers, address), password) as imap:
        imap.select("INBOX")
        sink = ExpungingSink()
        # IMAP lets a session read a mail until it has been told of the expunge (Dovecot does);
        # a server may also refuse. Either way: never a silently truncated mail.
        try:
            written = imap.fetch_to(1, sink, chunk_size=65536)
        except ProtocolError as exc:
            assert "UID 1" in exc.message or "no longer exist" in exc.message
        else:
            assert written == len(original) and sink.getvalue() == original
        assert imap.search_uids(unseen_only=False) == []  # the session goes on, the mail is gone


def test_delete_and_move_with_and_without_extensions(mail_servers):
    address, password = mail_servers.add_user()
    mail_servers.append(address, [mail(i) for i in range(8)])
    with IMAPClient(imap_settings(mail_servers, address), password) as imap:
        assert {"UIDPLUS", "MOVE"} <= imap.capabilities
        imap.select("INBOX")
        imap.delete([1, 2])  # UID EXPUNGE
        assert imap.search_uids(unseen_only=False) == [3, 4, 5, 6, 7, 8]
        imap.move([3], "Archive")  # UID MOVE, folder created on TRYCREATE
        imap.capabilities.discard("MOVE")
        imap.move([4], "Archive")  # COPY + \Deleted + UID EXPUNGE
        imap.capabilities.discard("UIDPLUS")
        imap.delete([5])  # \Deleted + EXPUNGE
        assert imap.search_uids(unseen_only=False) == [6, 7, 8]
        assert imap.status("Archive")["messages"] == 2
        imap.unselect()
        imap.create_folder("Archive")
    archived = mail_servers.server_copies(address, folder="Archive")
    assert sorted(archived.values()) == sorted([mail(2), mail(3)])


# --- scripted IMAP server ----------------------------------------------------------------

def imap_script(capabilities: str, *, fetch_then_drop: bool = False, logins: list | None = None,
                login_reply: str = "OK logged in"):
    def handler(conn):
        conn.send(f"* OK [CAPABILITY {capabilities}] fake ready\r\n")
        while True:
            line = conn.readline()
            if not line:
                return
            tag, _, rest = line.decode("utf-8", "replace").partition(" ")
            command = rest.split(" ", 1)[0].upper().strip()
            if command == "CAPABILITY":
                conn.send(f"* CAPABILITY {capabilities}\r\n{tag} OK done\r\n")
            elif command == "LOGIN":
                raw = line
                while (m := re.search(rb"\{(\d+)\}\r\n$", raw)):
                    conn.send("+ go on\r\n")
                    literal = conn.read(int(m.group(1)))
                    raw = raw + literal
                    raw = raw + conn.readline()
                if logins is not None:
                    logins.append(raw)
                conn.send(f"{tag} {login_reply}\r\n")
            elif command == "LIST":
                conn.send(
                    '* LIST (\\HasNoChildren) "/" {10}\r\nFolder "x"\r\n'
                    '* LIST (\\Noselect \\HasChildren) NIL "Top"\r\n'
                    '* LIST () "/" "Entw&APw-rfe"\r\n'
                    '* LIST (\\HasNoChildren) "/" INBOX\r\n'
                    '* LIST () "/" "Back\\\\slash \\"q\\""\r\n'
                    f"{tag} OK done\r\n"
                )
            elif command in ("SELECT", "EXAMINE"):
                conn.send(f"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n{tag} OK [READ-WRITE] done\r\n")
            elif command == "UID" and fetch_then_drop:
                conn.send("* 1 FETCH (UID 1 BODY[] {1000}\r\n" + "x" * 100)
                return
            elif command == "LOGOUT":
                conn.send(f"* BYE bye\r\n{tag} OK done\r\n")
                return
            else:
                conn.send(f"{tag} BAD unknown\r\n")

    return handler


def fake(server, **kw) -> MailSettings:
    values = dict(protocol="imap", host=server.host, port=server.port, protection="off", username="u@x.test", timeout=5)
    values.update(kw)
    return MailSettings(**values)


def test_utf8_login_with_a_synchronising_literal(scripted):
    logins: list[bytes] = []
    server = scripted(imap_script("IMAP4rev1", logins=logins))
    settings = fake(server, username="jürgen@x.test", allow_plain_without_tls=True)
    with IMAPClient(settings, 'pä"ss wört') as imap:
        assert imap.auth_mechanism == "LOGIN"
    assert len(logins) == 1
    line = logins[0]
    user = "jürgen@x.test".encode()
    password = 'pä"ss wört'.encode()
    assert b"{%d}\r\n" % len(password) + password in line
    assert user in line


def test_plain_login_refused_before_the_password_is_sent(scripted):
    server = scripted(imap_script("IMAP4rev1 AUTH=PLAIN SASL-IR"))
    password = "Geheim-123"
    with pytest.raises(InsecureAuthRefused):
        IMAPClient(fake(server, authentication="plain"), password).__enter__()
    time.sleep(0.1)
    data = server.data
    assert b"CAPABILITY" in data or data == b""
    for needle in (b"LOGIN", b"AUTHENTICATE", password.encode(), base64.b64encode(b"\0u@x.test\0" + password.encode())):
        assert needle not in data


def test_cram_md5_missing_names_what_is_offered(scripted):
    server = scripted(imap_script("IMAP4rev1 AUTH=PLAIN AUTH=LOGIN"))
    with pytest.raises(MechanismUnavailable) as info:
        IMAPClient(fake(server, authentication="encrypted"), "pw").__enter__()
    assert info.value.offered == ["LOGIN", "PLAIN"]
    assert "LOGIN, PLAIN" in info.value.message and "CRAM-MD5" in info.value.message


def test_list_parses_literals_nil_separators_utf7_and_escapes(scripted):
    server = scripted(imap_script("IMAP4rev1"))
    with IMAPClient(fake(server, authentication="plain", allow_plain_without_tls=True), "pw") as imap:
        folders = imap.list_folder_details()
    assert [f.name for f in folders] == ['Folder "x"', "Top", "Entwürfe", "INBOX", 'Back\\slash "q"']
    assert [f.separator for f in folders] == ["/", None, "/", "/", "/"]
    assert folders[1].flags == ["\\Noselect", "\\HasChildren"] and not folders[1].selectable
    assert imap.separator == "/"


def test_temporary_login_failure_is_transient(scripted):
    server = scripted(imap_script("IMAP4rev1", login_reply="NO [UNAVAILABLE] Temporary authentication failure"))
    from connections.mail.errors import MailError

    with pytest.raises(MailError) as info:
        IMAPClient(fake(server, authentication="plain", allow_plain_without_tls=True), "pw").__enter__()
    assert info.value.transient and not isinstance(info.value, AuthenticationFailed)


def test_server_dropping_mid_response(scripted):
    server = scripted(imap_script("IMAP4rev1", fetch_then_drop=True))
    with IMAPClient(fake(server, authentication="plain", allow_plain_without_tls=True), "pw") as imap:
        imap.select("INBOX")
        with pytest.raises(ConnectError) as info:
            list(imap.fetch_many([1]))
    assert info.value.transient


def test_bye_greeting_is_transient_and_non_imap_greeting_explains(scripted):
    bye = scripted(lambda conn: conn.send("* BYE Too many connections\r\n"))
    with pytest.raises(ConnectError) as info:
        IMAPClient(fake(bye), "pw").__enter__()
    assert info.value.transient and "Too many connections" in info.value.message
    smtp_like = scripted(lambda conn: (conn.send("220 mail ESMTP\r\n"), conn.readline()))
    with pytest.raises(ProtocolError) as info:
        IMAPClient(fake(smtp_like), "pw").__enter__()
    assert info.value.step == "greeting" and "IMAP port" in info.value.hint


def test_silent_server_times_out(scripted):
    server = scripted(lambda conn: time.sleep(5))
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        IMAPClient(fake(server, timeout=1), "pw").__enter__()
    assert time.monotonic() - started < 3
    assert info.value.step == "greeting" and "within 1 s" in info.value.message
