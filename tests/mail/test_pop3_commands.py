"""The commands of a logged-in POP3Client (connections/mail/pop3_commands.py) against the real
Dovecot of the fixture, and a scripted server for faults."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import tracemalloc

import pytest

from connections.mail import POP3Client
from connections.mail.errors import ConnectError, ProtocolError

from .test_imap import corpus_mails, mail
from .test_pop3 import fake, pop_script, pop_settings

pytestmark = pytest.mark.mailservers


def test_stat_uidl_list_top_and_retr_are_byte_exact_for_the_corpus(mail_servers):
    address, password = mail_servers.add_user()
    mails = corpus_mails()
    mail_servers.append(address, mails)
    imap_copies = list(mail_servers.server_copies(address).values())  # in UID order = POP3 order
    with POP3Client(pop_settings(mail_servers, address), password) as pop:
        count, total = pop.stat()
        assert count == len(mails)
        sizes = pop.list_sizes()
        assert sum(sizes.values()) == total and len(sizes) == count
        uids = pop.uidl()
        assert sorted(uids) == list(range(1, count + 1)) and len(set(uids.values())) == count
        mismatches = []
        added_crlf = 0
        for number in range(1, count + 1):
            sink = io.BytesIO()
            written = pop.retr_to(number, sink, size=sizes[number])
            raw = sink.getvalue()
            assert written == len(raw) == sizes[number]
            if raw != imap_copies[number - 1]:
                # IMAP cannot carry NUL: Dovecot hands out 0x80 there, POP3 the stored NUL.
                if not (b"\0" in raw and raw.replace(b"\0", b"\x80") == imap_copies[number - 1]):
                    mismatches.append(number)
            assert pop.retr(number) == raw  # the size remembered from list_sizes()
            # Without the LIST size the server's added CRLF stays: exactly what was sent.
            unsized = pop.retr(number, size=-1)
            if unsized != raw:
                assert unsized == raw + b"\r\n" and not raw.endswith(b"\r\n")
                added_crlf += 1
        assert mismatches == []
        assert added_crlf > 0  # the corpus has mails without a final line end
        top = pop.top(1, 0)
        assert imap_copies[0].startswith(top[:-2]) and top.endswith(b"\r\n")


def test_dele_is_applied_only_at_a_clean_quit(mail_servers):
    address, password = mail_servers.add_user()
    mail_servers.append(address, [mail(i) for i in range(3)])
    settings = pop_settings(mail_servers, address)
    with pytest.raises(RuntimeError):
        with POP3Client(settings, password) as pop:
            pop.dele(1)
            raise RuntimeError("storing failed")
    assert len(mail_servers.server_copies(address)) == 3  # nothing deleted
    with POP3Client(settings, password) as pop:
        pop.dele(1)
        pop.dele(3)
        with pytest.raises(ProtocolError):
            pop.dele(99)
    remaining = list(mail_servers.server_copies(address).values())
    assert remaining == [mail(1)]


def test_retr_streams_a_20mb_mail_with_bounded_memory(mail_servers):
    address, password = mail_servers.add_user()
    payload = base64.encodebytes(os.urandom(15 * 1024 * 1024)).replace(b"\n", b"\r\n")
    big = b"Subject: big\r\nContent-Transfer-Encoding: base64\r\n\r\n" + payload + b".starts with a dot\r\n"
    mail_servers.append(address, [big])
    expected = hashlib.sha256(big).hexdigest()
    size = len(big)
    del big, payload
    with POP3Client(pop_settings(mail_servers, address), password) as pop, tempfile.TemporaryFile() as sink:
        tracemalloc.start()
        try:
            written = pop.retr_to(1, sink)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert written == size
        assert peak < 3 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte mail"
        sink.seek(0)
        assert hashlib.sha256(sink.read()).hexdigest() == expected


def test_server_dropping_mid_retr_and_missing_uidl(scripted):
    server = scripted(pop_script(retr_then_drop=True, uidl=False))
    with pytest.raises(ConnectError) as info:
        with POP3Client(fake(server, authentication="plain", allow_plain_without_tls=True), "pw") as pop:
            with pytest.raises(ProtocolError):
                pop.uidl()
            pop.retr_to(1, io.BytesIO())
    assert info.value.transient
