"""The whole corpus (generated, plus the public one when present) appended to a Dovecot mailbox, polled over IMAP and over POP3:
every mail stored, byte for byte what the server hands out, nothing crashes."""
from __future__ import annotations

import hashlib

import pytest

from connections.models import PollOutcome, StoredMessage
from connections.services.inbound.poll import poll

from tests.mailcorpus import corpus_files

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mailservers]


def _pop3_copies(mail_servers, address: str, password: str) -> dict[str, bytes]:
    """UIDL -> what the server hands out over POP3, read with the bare standard library.

    Not the IMAP copies: over POP3 Dovecot keeps NUL bytes (IMAP replaces them). A mail
    not ending in CRLF gets one before the terminating "." (RFC 1939); the LIST size tells
    it apart from the mail, as the product's POP3 client does.
    """
    import poplib
    import ssl

    context = ssl.create_default_context(cafile=mail_servers.ca_file)
    poplib._MAXLINE = max(poplib._MAXLINE, 1 << 24)  # the corpus has lines of megabytes
    pop = poplib.POP3_SSL(mail_servers.host, mail_servers.ports["pop3s"], context=context, timeout=30)
    try:
        pop.user(address)
        pop.pass_(password)
        copies = {}
        sizes = dict(tuple(map(int, line.split())) for line in pop.list()[1])
        for line in pop.uidl()[1]:
            num, uidl = line.decode().split()
            data = b"".join(line + b"\r\n" for line in pop.retr(int(num))[1])
            if len(data) == sizes[int(num)] + 2:
                data = data[:-2]  # the CRLF the server adds before "." to a mail not ending in one
            copies[uidl] = data
        return copies
    finally:
        pop.quit()


def _check_stored(conn, copies: dict[int, bytes], by: str) -> None:
    stored = list(StoredMessage.objects.filter(connection=conn))
    assert len(stored) == len(copies)
    expected = sorted(hashlib.sha256(c).hexdigest() for c in copies.values())
    got = []
    for message in stored:
        with message.raw.open("rb") as fh:
            raw = fh.read()
        assert hashlib.sha256(raw).hexdigest() == message.raw_sha256
        assert message.size == len(raw)
        got.append(message.raw_sha256)
        assert message.parsed
        key = message.uid if by == "uid" else message.uidl
        assert raw == copies[key], f"{by} {key} differs from the server's copy"
    assert sorted(got) == expected


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_whole_corpus_polled(mail_servers, mailbox, make_inbound, protocol, settings):
    settings.INBOUND_STREAM_THRESHOLD = 512 * 1024  # the corpus' 1-2 MB mails go the streaming way
    files = corpus_files()
    address, password = mailbox
    mail_servers.append(address, [p.read_bytes() for p in files])
    copies = mail_servers.server_copies(address)
    assert len(copies) == len(files)
    conn = make_inbound(address, password, protocol=protocol, post_processing="keep", selection="all",
                        max_messages=1000)
    result = poll(connection_id=conn.pk)
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert (result.fetched, result.stored, result.failed) == (len(files), len(files), 0)
    if protocol == "pop3":
        copies = _pop3_copies(mail_servers, address, password)
    _check_stored(conn, copies, "uid" if protocol == "imap" else "uidl")
    problems = StoredMessage.objects.filter(connection=conn).exclude(parse_problems=[]).count()
    assert problems > 10  # the malformed ones are marked, not dropped
    again = poll(connection_id=conn.pk)
    # POP3 lists every mail and skips the known ones; IMAP asks only above the stored UIDs.
    listed = len(files) if protocol == "pop3" else 0
    assert (again.outcome, again.stored, again.skipped) == (PollOutcome.SUCCESS, 0, listed)


def test_corpus_poll_with_helper_processes_matches_in_process(mail_servers, make_inbound, settings):
    """Large polls hand hashing, parsing and file writing to forked helper processes: the
    result must be exactly what the poll computes by itself, byte for byte and field by field."""
    from connections.services.inbound import prepare_pool

    settings.INBOUND_PREPARE_PROCESSES = 2
    settings.INBOUND_PREPARE_PROCESS_MIN = 1
    pool = prepare_pool.start([("small", list(range(10)))])
    assert pool is not None, "the helper pool must start for this test to mean anything"
    pool.shutdown()

    raws = [p.read_bytes() for p in corpus_files()]
    seen: dict[bool, dict] = {}
    for helpers in (True, False):
        settings.INBOUND_PREPARE_PROCESS_MIN = 1 if helpers else 10**9
        address, password = mail_servers.add_user()
        mail_servers.append(address, raws)
        conn = make_inbound(address, password, post_processing="keep", selection="all", max_messages=1000)
        result = poll(connection_id=conn.pk)
        assert result.outcome == PollOutcome.SUCCESS, result.error
        assert (result.stored, result.failed) == (len(raws), 0)
        if helpers:
            _check_stored(conn, mail_servers.server_copies(address), "uid")
        seen[helpers] = {
            m.raw_sha256: (
                m.subject, m.from_header, m.to_header, m.date, m.text_body, m.html_body, m.parse_problems,
                sorted((a.filename, a.content_type, a.size, a.sha256, a.inline) for a in m.attachments.all()),
            )
            for m in StoredMessage.objects.filter(connection=conn).prefetch_related("attachments")
        }
    assert seen[True] == seen[False]
