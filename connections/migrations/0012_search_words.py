"""The body search index holds each mail's search words (its body's tokens, each once;
services.search_words) instead of the whole body: PostgreSQL's trigram cost per mail falls
from milliseconds to tens of microseconds, so mails go into the index as they are stored.
Mails stored before this migration have no words yet: they become search_indexed = false
(search reads their bodies directly, as for any unindexed mail) and the
index_messages_for_search task fills their words in batches."""
from django.db import migrations, models

_TABLE = "connections_storedmessage"
# Frozen copies of services.messages.WORDS_INDEX_SQL / its statistics at this migration.
WORDS = [
    f"CREATE INDEX IF NOT EXISTS message_words_trgm_idx ON {_TABLE} "
    "USING gin (UPPER(search_words) gin_trgm_ops) WHERE search_indexed",
    f"CREATE STATISTICS IF NOT EXISTS message_words_upper_stats ON (UPPER(search_words)) FROM {_TABLE}",
]
BODIES = [  # as 0003 made them
    f"CREATE INDEX IF NOT EXISTS message_text_trgm_idx ON {_TABLE} "
    "USING gin (UPPER(text_body) gin_trgm_ops) WHERE search_indexed",
    f"CREATE INDEX IF NOT EXISTS message_html_only_trgm_idx ON {_TABLE} "
    "USING gin (UPPER(html_body) gin_trgm_ops) WHERE text_body = '' AND search_indexed",
]


def _trigram_available(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
    return cursor.fetchone() is not None


def forward(apps, schema_editor) -> None:
    conn = schema_editor.connection
    with conn.cursor() as cursor:
        # Every existing mail needs its words before the words index may answer for it.
        cursor.execute(f"UPDATE {_TABLE} SET search_indexed = false WHERE search_indexed")
        if conn.vendor != "postgresql" or not _trigram_available(cursor):
            return
        for name in ("message_text_trgm_idx", "message_html_only_trgm_idx"):
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
        for sql in WORDS:
            cursor.execute(sql)


def backward(apps, schema_editor) -> None:
    conn = schema_editor.connection
    with conn.cursor() as cursor:
        cursor.execute(f"UPDATE {_TABLE} SET search_indexed = false WHERE search_indexed")
        if conn.vendor != "postgresql" or not _trigram_available(cursor):
            return
        cursor.execute("DROP INDEX IF EXISTS message_words_trgm_idx")
        cursor.execute("DROP STATISTICS IF EXISTS message_words_upper_stats")
        for sql in BODIES:
            cursor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("connections", "0011_monitoring_state")]

    operations = [
        migrations.AddField(
            model_name="storedmessage",
            name="search_words",
            field=models.TextField(blank=True, default="", editable=False),
        ),
        migrations.RunPython(forward, backward),
    ]
