"""IMAP wire encodings of connections/mail/imap_codec.py: modified UTF-7, UID sets (no server needed)."""
from __future__ import annotations

import pytest

from connections.mail.imap_codec import imap_utf7_decode, imap_utf7_encode, uid_sets


@pytest.mark.parametrize(
    "name, wire",
    [
        ("INBOX", "INBOX"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("A & B", "A &- B"),
        ("Archiv.ä & b", "Archiv.&AOQ- &- b"),
    ],
)
def test_modified_utf7_roundtrip(name, wire):
    assert imap_utf7_encode(name) == wire
    assert imap_utf7_decode(wire) == name
    assert imap_utf7_decode(wire.encode()) == name


def test_uid_sets_compacts_ranges_and_splits_long_sets():
    assert list(uid_sets([5, 1, 2, 3, 7, 8, 3])) == ["1:3,5,7:8"]
    assert list(uid_sets([])) == []
    many = list(uid_sets(range(1, 20000, 2), max_length=200))
    assert len(many) > 1 and all(len(s) <= 210 for s in many)
    assert sorted(int(x) for s in many for x in s.split(",")) == list(range(1, 20000, 2))
