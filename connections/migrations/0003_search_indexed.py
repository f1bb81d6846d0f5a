"""Body search indexing moves off the poll's path: StoredMessage.search_indexed, the body
trigram indexes partial on it, and an index of the mails not indexed yet. Mails stored
before this migration are in the indexes already (search_indexed = true). The bodies
are compressed with lz4 where PostgreSQL offers it."""
from django.db import DatabaseError, migrations, models, transaction

_TABLE = "connections_storedmessage"
# Frozen copies of services.messages.indexes.TEXT_INDEX_SQL / HTML_ONLY_INDEX_SQL at this migration.
PARTIAL = [
    f"CREATE INDEX IF NOT EXISTS message_text_trgm_idx ON {_TABLE} "
    "USING gin (UPPER(text_body) gin_trgm_ops) WHERE search_indexed",
    f"CREATE INDEX IF NOT EXISTS message_html_only_trgm_idx ON {_TABLE} "
    "USING gin (UPPER(html_body) gin_trgm_ops) WHERE text_body = '' AND search_indexed",
]
# Expression statistics: the partial indexes' own statistics do not reach the search's
# OR arms (see services.messages.indexes.EXPRESSION_STATISTICS_SQL).
STATISTICS = [
    f"CREATE STATISTICS IF NOT EXISTS message_text_upper_stats ON (UPPER(text_body)) FROM {_TABLE}",
    f"CREATE STATISTICS IF NOT EXISTS message_html_upper_stats ON (UPPER(html_body)) FROM {_TABLE}",
]
WHOLE = [  # as 0002 made them
    f"CREATE INDEX IF NOT EXISTS message_text_trgm_idx ON {_TABLE} USING gin (UPPER(text_body) gin_trgm_ops)",
    f"CREATE INDEX IF NOT EXISTS message_html_only_trgm_idx ON {_TABLE} "
    "USING gin (UPPER(html_body) gin_trgm_ops) WHERE text_body = ''",
]


def _replace(schema_editor, statements: list[str]) -> None:
    conn = schema_editor.connection
    if conn.vendor != "postgresql":
        return
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is None:
            return  # 0002 could not create pg_trgm: there are no trigram indexes to replace
        for name in ("message_text_trgm_idx", "message_html_only_trgm_idx"):
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
        for sql in statements:
            cursor.execute(sql)


def _body_compression(schema_editor, method: str) -> None:
    """The bodies' TOAST compression: lz4 compresses several times faster than pglz (the
    database's CPU per stored mail drops by about a third). Needs PostgreSQL 14 built
    with lz4 (Debian's is); elsewhere the default stays."""
    conn = schema_editor.connection
    if conn.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
            for column in ("text_body", "html_body"):
                cursor.execute(f"ALTER TABLE {_TABLE} ALTER COLUMN {column} SET COMPRESSION {method}")
    except DatabaseError:
        pass  # PostgreSQL < 14, or built without lz4: pglz, as before


def forward(apps, schema_editor) -> None:
    _replace(schema_editor, PARTIAL + STATISTICS)
    _body_compression(schema_editor, "lz4")


def backward(apps, schema_editor) -> None:
    _body_compression(schema_editor, "DEFAULT")
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            for name in ("message_text_upper_stats", "message_html_upper_stats"):
                cursor.execute(f"DROP STATISTICS IF EXISTS {name}")
    _replace(schema_editor, WHOLE)


class Migration(migrations.Migration):
    dependencies = [("connections", "0002_message_indexes")]

    operations = [
        migrations.AddField(
            model_name="storedmessage",
            name="search_indexed",
            field=models.BooleanField(default=True),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="storedmessage",
            name="search_indexed",
            field=models.BooleanField(default=False),
        ),
        migrations.AddIndex(
            model_name="storedmessage",
            index=models.Index(condition=models.Q(("search_indexed", False)), fields=["id"],
                               name="message_unindexed_idx"),
        ),
        migrations.RunPython(forward, backward),
    ]
