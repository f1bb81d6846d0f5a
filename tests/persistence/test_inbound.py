"""The fast inbound persistence paths (COPY, one-statement bookkeeping, array UPDATE) write
the same rows as their plain ORM versions (PostgreSQL; `plain_orm()` selects the ORM)."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import (
    Attachment, InboundConnection, MailboxLock, PollOutcome, PollRun, StoredMessage, Tenant, UserCredential,
)
from connections.services.inbound import locks
from connections.services.inbound.storage import store_batch
from connections.services.persistence import inbound as inbound_rows
from tests.inbound.mails import fetched_mail, make_mail

pytestmark = pytest.mark.django_db(transaction=True)

# Columns that differ between two stores of the same mails by construction.
_VARYING = {"id", "connection", "raw", "fetched_at", "post_processed_at", "message", "file", "search_indexed"}


def _connection(tenant: Tenant, **fields) -> InboundConnection:
    return InboundConnection.objects.create(tenant=tenant, name=f"p-{uuid.uuid4().hex[:8]}", host="h", **fields)


@pytest.fixture
def tenant() -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:8]}"
    return Tenant.objects.create(name=f"Tenant {slug}", slug=slug)


@pytest.fixture
def conn(tenant) -> InboundConnection:
    return _connection(tenant)


def _rows(model, **where) -> list[dict]:
    fields = [f.attname for f in model._meta.concrete_fields if f.name not in _VARYING]
    order = "uid" if model is StoredMessage else "message__uid"
    return list(model.objects.filter(**where).order_by(order, "pk").values(*fields))


def _batch() -> list[bytes]:
    return [make_mail(f"same {i} ü", body=f"body {i}\ttab\\", attachment=b"\x00" * (100 + i) if i % 2 else None,
                      attachment_name=f"a{i}.bin") for i in range(6)] + [
        b"From: broken <<@>\r\nSubject: =?x-unknown?q?caf=E9?=\r\nDate: never\r\n\r\nbody\r\n"]


def test_a_batch_stored_fast_and_plain_gives_the_same_rows(tenant):
    fast, plain = _connection(tenant), _connection(tenant)
    raws = _batch()
    assert inbound_rows.fast()
    outcomes = store_batch(connection=fast, mails=[fetched_mail(i, raw) for i, raw in enumerate(raws)])
    with inbound_rows.plain_orm():
        assert not inbound_rows.fast()
        plain_outcomes = store_batch(connection=plain, mails=[fetched_mail(i, raw) for i, raw in enumerate(raws)])
    assert [o.status for o in outcomes] == [o.status for o in plain_outcomes] == ["stored"] * 7
    assert _rows(StoredMessage, connection=fast) == _rows(StoredMessage, connection=plain)
    assert _rows(Attachment, message__connection=fast) == _rows(Attachment, message__connection=plain)
    assert Attachment.objects.filter(message__connection=fast).count() == 3


def test_marking_post_processed_fast_and_plain(conn):
    outcomes = store_batch(connection=conn, mails=[fetched_mail(i, make_mail(f"m{i}")) for i in range(4)])
    pks = [o.pk for o in outcomes]
    now = timezone.now()
    inbound_rows.mark_post_processed(pks[:2], now=now)
    with inbound_rows.plain_orm():
        inbound_rows.mark_post_processed(pks[2:], now=now)
        inbound_rows.mark_post_processed(pks[:1], now=now + timedelta(hours=1))  # done already: unchanged
    assert set(StoredMessage.objects.filter(pk__in=pks).values_list("post_processed_at", flat=True)) == {now}


@pytest.mark.parametrize("plain", [False, True])
def test_stored_server_keys_fast_and_plain(tenant, plain):
    """Only this connection's stored mails count, by their exact server key."""
    conn, other = _connection(tenant), _connection(tenant)
    store_batch(connection=conn, mails=[fetched_mail(i, make_mail(f"m{i}")) for i in (1, 2, 3)])
    store_batch(connection=other, mails=[fetched_mail(4, make_mail("elsewhere"))])
    asked = ["imap:7:1", "imap:7:3", "imap:7:4", "imap:8:2", "imap:7:5"]
    with (inbound_rows.plain_orm() if plain else _nothing()):
        found = inbound_rows.stored_server_keys(connection_id=conn.pk, server_keys=asked)
        none = inbound_rows.stored_server_keys(connection_id=conn.pk, server_keys=[])
    assert found == {"imap:7:1", "imap:7:3"}
    assert none == set()


@pytest.mark.parametrize("plain", [False, True])
def test_locks_fast_and_plain(plain):
    key = f"host|{uuid.uuid4().hex}|INBOX"
    with (inbound_rows.plain_orm() if plain else _nothing()):
        first = inbound_rows.take_lock(lock=locks.new_lock(key=key, timeout_seconds=60))
        held = inbound_rows.take_lock(lock=locks.new_lock(key=key, timeout_seconds=60))
        MailboxLock.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))
        lock = locks.new_lock(key=key, timeout_seconds=60)
        taken = inbound_rows.take_lock(lock=lock)
    assert first[0] and first[1] is False
    assert held == (None, False)
    assert taken == (lock.token, True)
    row = MailboxLock.objects.get(key=key)
    assert (row.token, row.holder, row.expires_at) == (lock.token, lock.holder, lock.expires_at)


@pytest.mark.parametrize("plain", [False, True])
def test_poll_bookkeeping_fast_and_plain(conn, plain):
    key = f"host|{uuid.uuid4().hex}|INBOX"
    run = PollRun(tenant_id=conn.tenant_id, connection=conn, trigger="manual", started_at=timezone.now(),
                  outcome=PollOutcome.RUNNING)
    with (inbound_rows.plain_orm() if plain else _nothing()):
        token, took_over = inbound_rows.open_run_and_lock(run=run, lock=locks.new_lock(key=key, timeout_seconds=60))
        assert token and not took_over and run.pk
        assert PollRun.objects.get(pk=run.pk).outcome == PollOutcome.RUNNING and MailboxLock.objects.filter(key=key)
        from connections.services.monitoring import metrics

        finished = timezone.now()
        run_id = inbound_rows.finish_run(
            run_id=run.pk, new_run=None, outcome={"finished_at": finished, "outcome": PollOutcome.SUCCESS, "stored": 3},
            connection_id=conn.pk, connection_update={"last_poll_at": finished, "last_poll_ok": True},
            release=(key, token), counters=metrics.upsert_sql(metrics.poll_values(
                outcome="success", stored=3, bytes_stored=10, duration_s=0.1, lag_s=None)),
        )
    assert run_id == run.pk
    row = PollRun.objects.get(pk=run.pk)
    assert (row.outcome, row.stored, row.finished_at) == (PollOutcome.SUCCESS, 3, finished)
    conn.refresh_from_db()
    assert (conn.last_poll_at, conn.last_poll_ok) == (finished, True)
    assert not MailboxLock.objects.filter(key=key).exists()


def test_fast_bookkeeping_refuses_to_run_inside_a_transaction(conn):
    """Its asynchronous commit would cover the caller's transaction: no hidden second mode."""
    from django.db import transaction

    run = PollRun(tenant_id=conn.tenant_id, connection=conn, trigger="manual", started_at=timezone.now(),
                  outcome=PollOutcome.RUNNING)
    with pytest.raises(RuntimeError, match="outside transaction.atomic"), transaction.atomic():
        inbound_rows.open_run_and_lock(run=run, lock=locks.new_lock(key=f"h|{uuid.uuid4().hex}|INBOX",
                                                                     timeout_seconds=60))
    assert not PollRun.objects.filter(connection=conn).exists()


def _nothing():
    from contextlib import nullcontext

    return nullcontext()


def test_a_batch_goes_in_with_binary_copy_and_reads_back_the_same(conn):
    """PostgreSQL: batches are inserted with a binary COPY (every column's type is known to
    psycopg); what comes back equals what was parsed, JSON, dates and text included."""
    from django.db import connection

    from connections.services.messages.search_words import words_of
    from connections.services.parsing.parse import parse_bytes

    assert connection.vendor == "postgresql"
    for model in (StoredMessage, Attachment):
        assert all(inbound_rows._copy_type(f, connection) for f in model._meta.concrete_fields), model
    raws = [make_mail("binäry \\ tab\t", body="line one\r\nback\\slash\ttab ünïcode", attachment=b"\x00\x01" * 900,
                      attachment_name="d.bin"),
            b"From: broken <<@>\r\nSubject: =?x-unknown?q?caf=E9?=\r\nDate: never\r\n\r\nbody\r\n"]
    outcomes = store_batch(connection=conn, mails=[fetched_mail(10 + i, raw) for i, raw in enumerate(raws)])
    assert [o.status for o in outcomes] == ["stored", "stored"]
    for outcome, raw in zip(outcomes, raws):
        row = StoredMessage.objects.get(pk=outcome.pk)
        parsed = parse_bytes(raw)
        assert (row.subject, row.from_header, row.text_body, row.date, row.parse_problems) == (
            parsed.subject, parsed.from_header, parsed.text_body, parsed.date, parsed.problems)
        assert isinstance(row.parse_problems, list)
        # In the body search index from the start: its words were computed with the parse.
        assert row.search_indexed is True and row.search_words == words_of(parsed.text_body)
    att = Attachment.objects.get(message_id=outcomes[0].pk)
    assert (att.filename, att.size) == ("d.bin", 1800)


def test_the_poll_load_fast_and_plain_gives_the_same_connection(tenant, conn):
    # Fields of every kind: JSON, dates, nullable, choices; the credential's encrypted ones.
    from connections.services.setup import credentials

    cred = credentials.save_artifact(credential=UserCredential(tenant=tenant, name="pl-cred", username="u@x.test"),
                                     password="s3cret")
    credentials.deploy(credential_id=cred.pk, user=None)
    InboundConnection.objects.filter(pk=conn.pk).update(
        imap_uidvalidity=7, imap_uid_next=42, last_poll_at=timezone.now(), last_error="x",
        last_test_report={"ok": True, "steps": [{"name": "tls"}]}, credential_name=" pl-cred ")
    fast = inbound_rows.load_for_poll(connection_id=conn.pk)
    with inbound_rows.plain_orm():
        plain = inbound_rows.load_for_poll(connection_id=conn.pk)
    fields = [f.attname for f in InboundConnection._meta.concrete_fields]
    assert {f: getattr(fast.connection, f) for f in fields} == {f: getattr(plain.connection, f) for f in fields}
    assert fast.connection.tenant == plain.connection.tenant and fast.connection.tenant.slug == tenant.slug
    assert fast.connection.has_pending is False and plain.connection.has_pending is False
    assert fast.connection._state.adding is False and fast.connection._state.db == plain.connection._state.db
    cred_fields = [f.attname for f in UserCredential._meta.concrete_fields]
    assert fast.credential is not None and fast.credential.deployed_password == "s3cret"
    assert fast.credential.get_deferred_fields() == {"password"}  # the entered one: not decrypted per poll
    assert {f: getattr(fast.credential, f) for f in cred_fields} == {f: getattr(plain.credential, f) for f in cred_fields}

    for name in ("other", "", "pl-cred\t"):  # none of that name; none named; white space SQL's btrim keeps
        InboundConnection.objects.filter(pk=conn.pk).update(credential_name=name)
        expected = "pl-cred" if name.strip() == "pl-cred" else None
        for start in (inbound_rows.load_for_poll(connection_id=conn.pk), _plain_load(conn.pk)):
            assert (start.credential.name if start.credential else None) == expected, name

    store_batch(connection=conn, mails=[fetched_mail(1, make_mail("pending"))], parse=False)
    assert inbound_rows.load_for_poll(connection_id=conn.pk).connection.has_pending is True
    assert _plain_load(conn.pk).connection.has_pending is True

    with pytest.raises(InboundConnection.DoesNotExist):
        inbound_rows.load_for_poll(connection_id=conn.pk + 10_000)
    with pytest.raises(InboundConnection.DoesNotExist):
        _plain_load(conn.pk + 10_000)


def _plain_load(pk: int):
    with inbound_rows.plain_orm():
        return inbound_rows.load_for_poll(connection_id=pk)
