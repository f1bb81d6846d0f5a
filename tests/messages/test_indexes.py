"""The list/search indexes: idempotent creation on PostgreSQL and SQLite, and the pages'
real queries use them (EXPLAIN), so a change to the sort key or the search lookups that
the indexes no longer match fails here rather than silently on a 100,000-message mailbox."""
from __future__ import annotations

import logging
import uuid

import django.db
import pytest
from django.db import connection, transaction
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from django.test.utils import CaptureQueriesContext

from connections.models import InboundConnection, StoredMessage, Tenant
from connections.services.messages import indexes, queries, search

pytestmark = pytest.mark.django_db


def _index_names(conn) -> set[str]:
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [StoredMessage._meta.db_table])
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s",
                           [StoredMessage._meta.db_table])
        return {row[0] for row in cursor.fetchall()}


def _page_sql(user, **kwargs) -> str:
    """The SQL the list page runs for its messages (the query that selects from the table)."""
    with CaptureQueriesContext(connection) as captured:
        queries.list_messages(user=user, **kwargs)
    return next(q["sql"] for q in captured.captured_queries
                if q["sql"].startswith("SELECT") and f'FROM "{StoredMessage._meta.db_table}"' in q["sql"])


def _explain(sql: str, *, off: tuple[str, ...] = ("seqscan", "sort")) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A test table is tiny: make the planner show what it would do on a big one.
            for method in off:
                cursor.execute(f"SET LOCAL enable_{method} = off")
            cursor.execute("EXPLAIN " + sql)
            return "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


@pytest.mark.smoke
def test_ensure_is_idempotent_and_creates_every_index(tenants):
    first = indexes.ensure_message_indexes()
    second = indexes.ensure_message_indexes()
    assert first == second and first, "the same statements run again without error"
    expected = {"message_tenant_sort_idx", "message_conn_sort_idx", "message_sort_idx"}
    if connection.vendor == "postgresql":
        expected |= {"message_subject_trgm_idx", "message_from_trgm_idx", "message_words_trgm_idx"}
    assert expected <= _index_names(connection)
    # Reversible (for a migration's RunPython), and re-creatable; DDL is rolled back with
    # the test's transaction on PostgreSQL, and re-created here for SQLite.
    indexes.drop_message_indexes()
    indexes.drop_message_indexes()
    assert not expected & _index_names(connection)
    indexes.ensure_message_indexes()
    assert expected <= _index_names(connection)


@pytest.mark.smoke
def test_list_pages_use_the_sort_indexes(tenants, store, build):
    store(connection=tenants["conn_a"], raw=build())
    alice = tenants["alice"]
    first = queries.list_messages(user=alice, page_size=1)
    plans = {
        "member": _explain(_page_sql(alice)),
        "member, deep page": _explain(_page_sql(alice, older_than=queries.Cursor(first.rows[0].date, 10**6).encode())),
        "connection filter": _explain(_page_sql(alice, filters=search.MessageFilters(connection_id=tenants["conn_a"].pk))),
    }
    assert "message_tenant_sort_idx" in plans["member"], plans["member"]
    assert "message_tenant_sort_idx" in plans["member, deep page"], plans["member, deep page"]
    assert "message_conn_sort_idx" in plans["connection filter"], plans["connection filter"]
    for label, plan in plans.items():
        # The order comes from the index: no sort step over the tenant's messages.
        assert "Sort" not in plan.replace("Sort Key", "") and "TEMP B-TREE" not in plan, (label, plan)


def test_search_uses_the_trigram_indexes_on_postgresql(tenants, django_user_model):
    """Django's icontains SQL (UPPER(col::text) LIKE …) matches the trigram index expressions."""
    assert connection.vendor == "postgresql", "the main test run is on PostgreSQL"
    root = django_user_model.objects.create_superuser("root-idx", password="x")
    # No tenant condition and no plain scans: only the trigram indexes can answer the LIKEs.
    plan = _explain(_page_sql(root, filters=search.MessageFilters(query="invoice")), off=("seqscan", "indexscan"))
    for name in ("message_subject_trgm_idx", "message_from_trgm_idx", "message_words_trgm_idx",
                 "message_unindexed_idx"):
        assert name in plan, plan


def test_body_trigram_index_holds_the_words_of_indexed_mails(tenants):
    """The body search index holds each mail's words (not its body), partial on
    search_indexed, in the migrated database as in ensure_message_indexes()."""
    assert connection.vendor == "postgresql"

    def definitions() -> dict[str, str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                           [StoredMessage._meta.db_table])
            return dict(cursor.fetchall())

    migrated = definitions()
    with connection.cursor() as cursor:
        cursor.execute("SELECT stxname FROM pg_statistic_ext")
        assert set(indexes.MESSAGE_STATISTICS_NAMES) <= {row[0] for row in cursor.fetchall()}
    assert "upper(search_words) gin_trgm_ops" in migrated["message_words_trgm_idx"]
    assert migrated["message_words_trgm_idx"].endswith("WHERE search_indexed")
    assert "message_text_trgm_idx" not in migrated and "message_html_only_trgm_idx" not in migrated
    with transaction.atomic():
        sid = transaction.savepoint()
        indexes.drop_message_indexes()
        indexes.ensure_message_indexes()
        ensured = definitions()
        transaction.savepoint_rollback(sid)
    assert ensured == migrated
    with connection.cursor() as cursor:  # Debian's PostgreSQL 15 has lz4: the migration chose it
        cursor.execute("SELECT attname, attcompression FROM pg_attribute WHERE attrelid = %s::regclass "
                       "AND attname IN ('text_body', 'html_body')", [StoredMessage._meta.db_table])
        assert dict(cursor.fetchall()) == {"text_body": "l", "html_body": "l"}


def test_search_finds_mails_before_and_after_they_are_indexed(tenants, store, build):
    alice, conn = tenants["alice"], tenants["conn_a"]
    store(connection=conn, raw=build(subject="one", text="the zanzibar quarterly report"))
    store(connection=conn, raw=build(subject="two", text=None, html="<p>zanzibar newsletter</p>"))
    store(connection=conn, raw=build(subject="three", text="nothing to see"))

    def found(query: str) -> set[str]:
        return {r.subject for r in queries.list_messages(user=alice, filters=search.MessageFilters(query=query)).rows}

    assert not StoredMessage.objects.filter(search_indexed=True).exists(), "stored mails wait for the indexer"
    assert found("zanzibar") == {"one", "two"}
    assert indexes.index_for_search(batch=1, limit=2) == 2, "a limit stops it"
    assert indexes.index_for_search(batch=2) == 1
    assert indexes.index_for_search() == 0, "nothing left: idempotent"
    assert StoredMessage.objects.filter(search_indexed=True).count() == 3
    assert found("zanzibar") == {"one", "two"}
    assert found("QUARTERLY report") == {"one"} and found("newsletter") == {"two"}



def test_without_the_right_to_create_pg_trgm_the_sort_indexes_still_come(tenants, caplog):
    """A database user without CREATE on the database cannot add pg_trgm: the trigram
    indexes are skipped with a warning, the sort indexes are created, nothing aborts."""
    assert connection.vendor == "postgresql"
    role = f"tm_noext_{uuid.uuid4().hex[:10]}"
    table = StoredMessage._meta.db_table
    with transaction.atomic():  # everything here (role, ownership, drops) is rolled back
        sid = transaction.savepoint()
        with connection.cursor() as cursor:
            cursor.execute("DROP EXTENSION IF EXISTS pg_trgm CASCADE")
            indexes.drop_message_indexes()
            cursor.execute(f"CREATE ROLE {role} NOLOGIN")
            cursor.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
            cursor.execute(f"ALTER TABLE {table} OWNER TO {role}")
            cursor.execute(f"SET LOCAL ROLE {role}")
            with caplog.at_level(logging.WARNING, logger="connections.services.messages.indexes"):
                ran = indexes.ensure_message_indexes()
            cursor.execute("RESET ROLE")
            names = _index_names(connection)
        transaction.savepoint_rollback(sid)
    assert {"message_tenant_sort_idx", "message_conn_sort_idx", "message_sort_idx"} <= names
    assert not any("trgm" in n for n in names) and not any("gin_trgm_ops" in s for s in ran)
    assert "pg_trgm could not be created" in caplog.text
    assert {"message_subject_trgm_idx"} <= _index_names(connection), "rolled back: the indexes are back"


@pytest.fixture
def sqlite_db():
    """A separate in-memory SQLite database with the message tables (the embedded default)."""
    from django.conf import settings

    alias = f"tm_sqlite_{uuid.uuid4().hex[:8]}"
    wrapper = SQLiteWrapper({**settings.DATABASES["default"], "ENGINE": "django.db.backends.sqlite3",
                             "NAME": ":memory:", "OPTIONS": {}, "TEST": {}}, alias=alias)
    django.db.connections[alias] = wrapper
    try:
        with wrapper.schema_editor() as editor:
            for model in (Tenant, InboundConnection, StoredMessage):
                editor.create_model(model)
        yield wrapper
    finally:
        wrapper.close()
        del django.db.connections[alias]


def test_sqlite_indexes_are_idempotent_and_serve_the_list(sqlite_db):
    assert indexes.ensure_message_indexes(using=sqlite_db) == indexes.ensure_message_indexes(using=sqlite_db)
    assert {"message_tenant_sort_idx", "message_conn_sort_idx", "message_sort_idx"} <= _index_names(sqlite_db)
    cases = {
        "message_tenant_sort_idx": StoredMessage.objects.filter(tenant_id__in=[1]),
        "message_conn_sort_idx": StoredMessage.objects.filter(tenant_id__in=[1], connection_id=3),
        "message_sort_idx": StoredMessage.objects.all(),
    }
    for index, qs in cases.items():
        # The same shape as list_messages builds: annotate the sort key, order, limit.
        qs = qs.select_related("connection", "tenant").annotate(sort_at=indexes.SORT_KEY).order_by("-sort_at", "-id")[:51]
        sql, params = qs.query.get_compiler(connection=sqlite_db).as_sql()
        with sqlite_db.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
        assert index in plan and "TEMP B-TREE" not in plan, plan


def test_runpython_helpers_work_inside_a_migration_schema_editor(tenants, sqlite_db):
    """What `migrations.RunPython(create_message_indexes, remove_message_indexes)` does, on
    both databases: forward, forward again (idempotent), backward."""
    for conn in (connection, sqlite_db):
        with conn.schema_editor(atomic=True) as editor:
            indexes.create_message_indexes(None, editor)
            indexes.create_message_indexes(None, editor)
        assert "message_tenant_sort_idx" in _index_names(conn), conn.vendor
        with conn.schema_editor(atomic=True) as editor:
            indexes.remove_message_indexes(None, editor)
        assert "message_tenant_sort_idx" not in _index_names(conn), conn.vendor
        with conn.schema_editor(atomic=True) as editor:
            indexes.create_message_indexes(None, editor)
        assert "message_tenant_sort_idx" in _index_names(conn), conn.vendor
