"""claims.py: claiming due messages (SKIP LOCKED, never shared) and loading their MIME in chunks."""
from __future__ import annotations

import threading

import pytest
from django.db import connection as db_connection
from django.db import transaction

from connections.models import OutboxMessage, OutboxStatus
from connections.services.outbound import claims
from connections.services.outbound.claims import MimeLoader, claim

from .helpers import queue_one, status_of


@pytest.mark.django_db
def test_claim_marks_sending_and_a_second_claim_gets_nothing(make_connection):
    conn = make_connection()
    msgs = [queue_one(conn) for _ in range(3)]
    claimed = claim(conn, 10, None)
    assert sorted(c.id for c in claimed) == sorted(m.pk for m in msgs)
    assert {status_of(m) for m in msgs} == {OutboxStatus.SENDING}
    assert all(OutboxMessage.objects.get(pk=m.pk).claimed_at for m in msgs)
    assert claim(conn, 10, None) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_skip_locked_rows_and_never_share_a_message(make_connection):
    """Two claimers at once: the second skips the rows the first holds (SKIP LOCKED)."""
    conn = make_connection()
    msgs = [queue_one(conn, f"m{i}@example.test") for i in range(6)]
    first_has_locked = threading.Event()
    release_first = threading.Event()
    results: dict[str, list[int]] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                rows = list(
                    OutboxMessage.objects.select_for_update(skip_locked=True)
                    .filter(pk__in=[m.pk for m in msgs[:3]]).values_list("pk", flat=True)
                )
                results["held"] = rows
                first_has_locked.set()
                release_first.wait(10)
        finally:
            db_connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_has_locked.wait(10)
    try:
        claimed = claim(conn, 10, None)  # does not wait for the first transaction
        results["second"] = [c.id for c in claimed]
    finally:
        release_first.set()
        thread.join(10)
    assert sorted(results["second"]) == sorted(m.pk for m in msgs[3:])
    assert not set(results["second"]) & set(results["held"])


@pytest.mark.django_db(transaction=True)
def test_mime_is_loaded_in_chunks_of_bounded_bytes_in_order(make_connection, monkeypatch):
    conn = make_connection()
    msgs = [queue_one(conn, f"m{i}@example.test") for i in range(50)]
    batch = claim(conn, 100, None)
    sizes = {item.size for item in batch}
    assert max(sizes) * 20 < min(sizes) * 21  # so chunks of 20 below
    monkeypatch.setattr(claims, "MIME_CHUNK_BYTES", max(sizes) * 20)
    loader = MimeLoader(batch)
    assert loader.chunks == {20: 40, 40: 50}  # the first chunk (0, 20) loaded at once
    assert all(item.mime is not None for item in batch[:20]) and batch[20].mime is None
    for index, item in enumerate(batch):
        if item.mime is None:
            loader.fill(index)
        assert item.mime == bytes(msgs[index].mime)
    assert loader.chunks == {}
