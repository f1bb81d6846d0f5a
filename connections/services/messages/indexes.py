"""The order of the message list and the indexes that serve it (and substring search).

Order: newest first by the message's Date header, except that a Date later than the
moment we fetched the mail counts as the fetch time (spam dated 2037 must not sit on
top forever) and a missing Date falls back to the fetch time:

    sort_at = LEAST(COALESCE(date, fetched_at), fetched_at)

The indexes that make keyset pages on (sort_at, id) fast (and the trigram indexes that
make substring search fast on PostgreSQL) are created by `ensure_message_indexes()`;
`MESSAGE_INDEX_SQL` holds the statements for a migration. `index_for_search()` puts
stored mails into the body search indexes after the poll.
"""
from __future__ import annotations

import logging

from django.db import DatabaseError, transaction
from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F
from django.db.models.functions import Coalesce, Least

from ...models import StoredMessage
from . import search_words

log = logging.getLogger(__name__)

SORT_KEY = Least(Coalesce("date", "fetched_at"), F("fetched_at"))

_TABLE = StoredMessage._meta.db_table
_SORT_PG = "LEAST(COALESCE(date, fetched_at), fetched_at) DESC, id DESC"
_SORT_SQLITE = 'MIN(COALESCE("date", "fetched_at"), "fetched_at") DESC, id DESC'
TRIGRAM_EXTENSION_SQL = "CREATE EXTENSION IF NOT EXISTS pg_trgm"
# The body search index: the searched body's words (services.messages.search_words), not the body.
WORDS_INDEX_SQL = (f"CREATE INDEX IF NOT EXISTS message_words_trgm_idx ON {_TABLE} "
                   "USING gin (UPPER(search_words) gin_trgm_ops) WHERE search_indexed")
EXPRESSION_STATISTICS_SQL = [
    f"CREATE STATISTICS IF NOT EXISTS message_words_upper_stats ON (UPPER(search_words)) FROM {_TABLE}",
    f"CREATE STATISTICS IF NOT EXISTS message_text_upper_stats ON (UPPER(text_body)) FROM {_TABLE}",
    f"CREATE STATISTICS IF NOT EXISTS message_html_upper_stats ON (UPPER(html_body)) FROM {_TABLE}",
]
MESSAGE_STATISTICS_NAMES = ["message_words_upper_stats", "message_text_upper_stats", "message_html_upper_stats"]
MESSAGE_INDEX_SQL: dict[str, list[str]] = {
    "postgresql": [
        TRIGRAM_EXTENSION_SQL,
        # Keyset order per tenant, per connection, and across tenants (superusers).
        f"CREATE INDEX IF NOT EXISTS message_tenant_sort_idx ON {_TABLE} (tenant_id, {_SORT_PG})",
        f"CREATE INDEX IF NOT EXISTS message_conn_sort_idx ON {_TABLE} (connection_id, {_SORT_PG})",
        f"CREATE INDEX IF NOT EXISTS message_sort_idx ON {_TABLE} ({_SORT_PG})",
        # Django's icontains on PostgreSQL is UPPER(col::text) LIKE UPPER('%term%'): trigram
        # GIN indexes on exactly that expression serve substring search.
        f"CREATE INDEX IF NOT EXISTS message_subject_trgm_idx ON {_TABLE} USING gin (UPPER(subject) gin_trgm_ops)",
        f"CREATE INDEX IF NOT EXISTS message_from_trgm_idx ON {_TABLE} USING gin (UPPER(from_header) gin_trgm_ops)",
        # Bodies are searched through their words (each token once: a body's trigrams
        # would cost milliseconds a mail); mails not search_indexed yet are read directly
        # (through message_unindexed_idx).
        WORDS_INDEX_SQL,
        # The planner takes a partial index's statistics only when the query implies its
        # predicate; search_indexed sits inside the search's OR arms, so without these it
        # would guess every body word rare and sort thousands of matches of a common one.
        *EXPRESSION_STATISTICS_SQL,
    ],
    "sqlite": [
        f"CREATE INDEX IF NOT EXISTS message_tenant_sort_idx ON {_TABLE} (tenant_id, {_SORT_SQLITE})",
        f"CREATE INDEX IF NOT EXISTS message_conn_sort_idx ON {_TABLE} (connection_id, {_SORT_SQLITE})",
        f"CREATE INDEX IF NOT EXISTS message_sort_idx ON {_TABLE} ({_SORT_SQLITE})",
    ],
}
MESSAGE_INDEX_NAMES = [
    "message_tenant_sort_idx", "message_conn_sort_idx", "message_sort_idx",
    "message_subject_trgm_idx", "message_from_trgm_idx", "message_words_trgm_idx",
]


def ensure_message_indexes(*, using: BaseDatabaseWrapper | None = None) -> list[str]:
    """Create the list/search indexes if missing; returns the statements that ran.

    Idempotent (`IF NOT EXISTS`), so it is safe in a migration, at every deploy, or twice.
    PostgreSQL: when the database user may not create the `pg_trgm` extension (it needs
    the CREATE privilege on the database; pg_trgm is a trusted extension since PG 13),
    the trigram indexes are skipped with a warning — search still works, only slower —
    and the sort indexes are created anyway. Other databases: nothing to do.
    """
    conn = using or default_connection
    statements = MESSAGE_INDEX_SQL.get(conn.vendor, [])
    ran: list[str] = []
    with conn.cursor() as cursor:
        trigram = True
        if TRIGRAM_EXTENSION_SQL in statements:
            try:
                # A savepoint: a refused CREATE EXTENSION must not abort a migration's transaction.
                with transaction.atomic(using=conn.alias):
                    cursor.execute(TRIGRAM_EXTENSION_SQL)
                ran.append(TRIGRAM_EXTENSION_SQL)
            except DatabaseError as exc:
                trigram = False
                log.warning(
                    "pg_trgm could not be created (%s); message search works without its indexes, "
                    "only slower. A database superuser can run: CREATE EXTENSION pg_trgm;",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__,
                )
        for sql in statements:
            if sql == TRIGRAM_EXTENSION_SQL or (not trigram and "gin_trgm_ops" in sql):
                continue
            cursor.execute(sql)
            ran.append(sql)
    return ran


def drop_message_indexes(*, using: BaseDatabaseWrapper | None = None) -> None:
    """Remove the indexes `ensure_message_indexes` creates (not the extension); idempotent."""
    conn = using or default_connection
    if conn.vendor not in MESSAGE_INDEX_SQL:
        return
    with conn.cursor() as cursor:
        for name in MESSAGE_INDEX_NAMES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
        if conn.vendor == "postgresql":
            for name in MESSAGE_STATISTICS_NAMES:
                cursor.execute(f"DROP STATISTICS IF EXISTS {name}")


SEARCH_INDEX_BATCH = 500


def index_for_search(*, batch: int = SEARCH_INDEX_BATCH, limit: int | None = None) -> int:
    """Put stored mails that are not in the body search index yet (stored before it held
    words, or stored raw and parsed later) into it: their words, search_indexed, oldest
    first, `batch` per short transaction. Returns how many. Safe to run in several workers
    at once (SKIP LOCKED) and again."""
    done = 0
    while limit is None or done < limit:
        size = batch if limit is None else min(batch, limit - done)
        with transaction.atomic():
            rows = list(StoredMessage.objects.filter(search_indexed=False).order_by("id")
                        .select_for_update(skip_locked=True).values_list("id", "text_body", "html_body")[:size])
            indexed = [StoredMessage(pk=pk, search_indexed=True,
                                     search_words=search_words.words_of(search_words.searched_body(text, html)))
                       for pk, text, html in rows]
            StoredMessage.objects.bulk_update(indexed, ["search_words", "search_indexed"])
        done += len(rows)
        if len(rows) < size:
            break
    return done


def create_message_indexes(apps, schema_editor) -> None:
    """`migrations.RunPython` forward step: `RunPython(create_message_indexes, remove_message_indexes)`."""
    ensure_message_indexes(using=schema_editor.connection)


def remove_message_indexes(apps, schema_editor) -> None:
    """`migrations.RunPython` reverse step."""
    drop_message_indexes(using=schema_editor.connection)
