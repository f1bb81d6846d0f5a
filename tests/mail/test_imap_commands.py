"""The commands of a logged-in IMAPClient (connections/mail/imap_commands.py) against the real
Dovecot of the fixture, and a scripted server for faults."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import tracemalloc

import pytest

from connections.mail import IMAPClient
from connections.mail.errors import ConnectError, ProtocolError

from .test_imap import corpus_mails, fake, imap_script, imap_settings, mail

pytestmark = pytest.mark.mailservers


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


def test_list_parses_literals_nil_separators_utf7_and_escapes(scripted):
    server = scripted(imap_script("IMAP4rev1"))
    with IMAPClient(fake(server, authentication="plain", allow_plain_without_tls=True), "pw") as imap:
        folders = imap.list_folder_details()
    assert [f.name for f in folders] == ['Folder "x"', "Top", "Entwürfe", "INBOX", 'Back\\slash "q"']
    assert [f.separator for f in folders] == ["/", None, "/", "/", "/"]
    assert folders[1].flags == ["\\Noselect", "\\HasChildren"] and not folders[1].selectable
    assert imap.separator == "/"


def test_server_dropping_mid_response(scripted):
    server = scripted(imap_script("IMAP4rev1", fetch_then_drop=True))
    with IMAPClient(fake(server, authentication="plain", allow_plain_without_tls=True), "pw") as imap:
        imap.select("INBOX")
        with pytest.raises(ConnectError) as info:
            list(imap.fetch_many([1]))
    assert info.value.transient
