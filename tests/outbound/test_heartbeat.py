"""recovery.Heartbeat: renewing a claim's lease never waits for a row another transaction
holds (the session writing that message's outcome), so the two cannot deadlock."""
from __future__ import annotations

import threading

import pytest
from django.db import connection as db_connection
from django.db import transaction

from connections.models import OutboxMessage
from connections.services.outbound.claims import claim
from connections.services.outbound.recovery import Heartbeat

from .helpers import queue_one


@pytest.mark.django_db(transaction=True)
def test_renewal_skips_a_row_held_by_another_transaction_and_renews_the_rest(make_connection):
    conn = make_connection()
    msgs = [queue_one(conn, f"h{i}@example.test") for i in range(4)]
    claimed = claim(conn, 10, None)
    claimed_at = OutboxMessage.objects.get(pk=claimed[0].id).claimed_at
    held, free = msgs[0].pk, [m.pk for m in msgs[1:]]
    before = dict(OutboxMessage.objects.values_list("pk", "lease_until"))
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:  # an outcome being written: the row locked until its commit
        try:
            with transaction.atomic():
                OutboxMessage.objects.filter(pk=held).update(last_error="writing")
                holding.set()
                release.wait(10)
        finally:
            db_connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    renewed: list[int] = []
    heartbeat = Heartbeat(connection_id=conn.pk, claimed_at=claimed_at)
    try:
        renewer = threading.Thread(target=lambda: (renewed.append(heartbeat.renew()), db_connection.close()))
        renewer.start()
        renewer.join(10)
        assert not renewer.is_alive(), "the renewal waited for the held row"
    finally:
        release.set()
        thread.join(10)
        heartbeat.close()
    assert renewed == [3]
    after = dict(OutboxMessage.objects.values_list("pk", "lease_until"))
    assert after[held] == before[held] and all(after[pk] > before[pk] for pk in free)
