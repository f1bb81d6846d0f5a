"""services/persistence/outbound.py: each fast path writes the same rows as its ORM version."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import OutboundConnection, OutboxMessage, OutboxStatus, SendProgress, Tenant
from connections.services.outbound.claims import claim
from connections.services.outbound.enqueue import enqueue, message_row
from connections.services.outbound.prepare import prepare
from connections.services.persistence import outbound as persistence

# Outside a transaction, as the sending worker writes (prepared statements, one-statement commits).
pytestmark = pytest.mark.django_db(transaction=True)

SKIP = {"id", "created_at", "updated_at", "mime", "claimed_at", "lease_until", "next_attempt_at"}
SKIP_ENQUEUED = SKIP | {"message_id", "size"}  # each enqueued message has a Message-ID of its own


@pytest.fixture
def conn() -> OutboundConnection:
    slug = f"t-{uuid.uuid4().hex[:8]}"
    tenant = Tenant.objects.create(name=f"Tenant {slug}", slug=slug)
    return OutboundConnection.objects.create(
        tenant=tenant, name="smtp", host="127.0.0.1", port=1, protection="off", authentication="none",
        default_from="Acme <support@example.test>")


def _claimed_pair(conn, n: int = 2):
    """n claimed messages for the fast path and n equal ones for the ORM version."""
    for i in range(2 * n):
        enqueue(connection_id=conn.pk, to=[f"r{i % n}@example.test"], subject=f"s{i % n}", text="t", dispatch=False)
    batch = sorted(claim(conn, 2 * n, None), key=lambda item: item.id)
    return batch[:n], batch[n:]


def _rows(ids, skip=SKIP_ENQUEUED) -> list[dict]:
    names = [f.name for f in OutboxMessage._meta.concrete_fields if f.name not in skip]
    by_pk = {row["id"]: row for row in OutboxMessage.objects.filter(pk__in=ids).values("id", *names)}
    return [{k: v for k, v in by_pk[pk].items() if k != "id"} for pk in ids]


def _sent(i: int) -> dict:
    now = timezone.now().replace(microsecond=0)
    return dict(status=OutboxStatus.SENT, sent_at=now, attempts=1, last_error="", next_attempt_at=None,
                recipient_results={f"r{i}@example.test": {"status": "accepted", "code": 250}},
                delivery_log=[{"at": now.isoformat(), "outcome": "sent", "code": 250, "detail": "ok"}],
                progress=SendProgress.REPLIED)


def _retry(i: int) -> dict:
    return dict(status=OutboxStatus.QUEUED, attempts=1, last_error="451 later",
                next_attempt_at=timezone.now() + timedelta(minutes=1), progress=SendProgress.REPLIED,
                delivery_log=[{"at": "x", "outcome": "retry", "code": 451, "detail": "451 later"}])


def test_write_outcome_equals_its_orm_version_and_writes_only_while_ours(conn):
    fast, orm = _claimed_pair(conn)
    for i, (a, b) in enumerate(zip(fast, orm)):
        values = _sent(i) if i == 0 else _retry(i)
        assert persistence.write_outcome(message_id=a.id, claimed_at=a.claimed_at, values=values)
        assert persistence.write_outcome_orm(message_id=b.id, claimed_at=b.claimed_at, values=values)
    assert _rows([m.id for m in fast]) == _rows([m.id for m in orm])
    # no longer ours (written already: not `sending`): neither writes
    again = {"progress": SendProgress.DATA}
    assert not persistence.write_outcome(message_id=fast[0].id, claimed_at=fast[0].claimed_at, values=again)
    assert not persistence.write_outcome_orm(message_id=orm[0].id, claimed_at=orm[0].claimed_at, values=again)


def test_write_outcomes_equals_its_orm_version_over_several_shapes(conn):
    fast, orm = _claimed_pair(conn, n=3)
    values = [_sent(0), _retry(1), {"progress": SendProgress.DATA}]
    # the third message of each side was taken by an operator meanwhile: not written
    OutboxMessage.objects.filter(pk__in=[fast[2].id, orm[2].id]).update(status=OutboxStatus.CANCELLED)
    done_fast = persistence.write_outcomes(rows=[(m.id, m.claimed_at, v) for m, v in zip(fast, values)])
    done_orm = persistence.write_outcomes_orm(rows=[(m.id, m.claimed_at, v) for m, v in zip(orm, values)])
    assert done_fast == {fast[0].id, fast[1].id} and done_orm == {orm[0].id, orm[1].id}
    assert _rows([m.id for m in fast]) == _rows([m.id for m in orm])


def test_insert_messages_by_copy_equals_bulk_create(conn):
    n = persistence.COPY_MIN + 2
    now = timezone.now()

    prepared = [prepare(connection_id=conn.pk, connection=conn, to=[f"r{i}@example.test"], subject=f"Grüße {i}",
                        text="t\n" * i, html="<p>x</p>" if i % 2 else "", extra_headers={"X-Seq": str(i)},
                        priority=i) for i in range(n)]

    def rows():
        return [message_row(p, now) for p in prepared]

    fast = persistence.insert_messages(rows())
    orm = persistence.insert_messages_orm(rows())
    assert all(m.pk for m in fast + orm) and len({m.pk for m in fast + orm}) == 2 * n
    assert _rows([m.pk for m in fast], SKIP) == _rows([m.pk for m in orm], SKIP)
    stored = dict(OutboxMessage.objects.filter(pk__in=[m.pk for m in fast + orm]).values_list("pk", "mime"))
    assert [bytes(stored[a.pk]) for a in fast] == [bytes(b.mime) for b in orm] == [bytes(stored[b.pk]) for b in orm]


def test_load_mime_equals_its_orm_version(conn):
    fast, orm = _claimed_pair(conn, n=2)
    ids = [m.id for m in fast + orm] + [10**9]  # an id that is not there is left out
    loaded = persistence.load_mime(ids=ids)
    assert loaded == persistence.load_mime_orm(ids=ids)
    assert sorted(loaded) == sorted(ids[:-1])
    assert all(type(mime) is bytes and mime == bytes(OutboxMessage.objects.get(pk=pk).mime)
               and b"Subject: s" in mime for pk, mime in loaded.items())
