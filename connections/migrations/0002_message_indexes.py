"""List and search indexes of the message pages: expression and trigram indexes that a
model's Meta cannot express portably, as they were at this migration (frozen here: the
current definitions live in connections.services.messages.indexes and 0003 moves to them)."""
from django.db import DatabaseError, migrations, transaction

_TABLE = "connections_storedmessage"
_SORT_PG = "LEAST(COALESCE(date, fetched_at), fetched_at) DESC, id DESC"
_SORT_SQLITE = 'MIN(COALESCE("date", "fetched_at"), "fetched_at") DESC, id DESC'
_TRGM = "CREATE EXTENSION IF NOT EXISTS pg_trgm"
SQL = {
    "postgresql": [
        f"CREATE INDEX IF NOT EXISTS message_tenant_sort_idx ON {_TABLE} (tenant_id, {_SORT_PG})",
        f"CREATE INDEX IF NOT EXISTS message_conn_sort_idx ON {_TABLE} (connection_id, {_SORT_PG})",
        f"CREATE INDEX IF NOT EXISTS message_sort_idx ON {_TABLE} ({_SORT_PG})",
        f"CREATE INDEX IF NOT EXISTS message_subject_trgm_idx ON {_TABLE} USING gin (UPPER(subject) gin_trgm_ops)",
        f"CREATE INDEX IF NOT EXISTS message_from_trgm_idx ON {_TABLE} USING gin (UPPER(from_header) gin_trgm_ops)",
        f"CREATE INDEX IF NOT EXISTS message_text_trgm_idx ON {_TABLE} USING gin (UPPER(text_body) gin_trgm_ops)",
        f"CREATE INDEX IF NOT EXISTS message_html_only_trgm_idx ON {_TABLE} "
        "USING gin (UPPER(html_body) gin_trgm_ops) WHERE text_body = ''",
    ],
    "sqlite": [
        f"CREATE INDEX IF NOT EXISTS message_tenant_sort_idx ON {_TABLE} (tenant_id, {_SORT_SQLITE})",
        f"CREATE INDEX IF NOT EXISTS message_conn_sort_idx ON {_TABLE} (connection_id, {_SORT_SQLITE})",
        f"CREATE INDEX IF NOT EXISTS message_sort_idx ON {_TABLE} ({_SORT_SQLITE})",
    ],
}
NAMES = ["message_tenant_sort_idx", "message_conn_sort_idx", "message_sort_idx", "message_subject_trgm_idx",
         "message_from_trgm_idx", "message_text_trgm_idx", "message_html_only_trgm_idx"]


def create(apps, schema_editor) -> None:
    conn = schema_editor.connection
    trigram = True
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            try:
                with transaction.atomic(using=conn.alias):  # a refusal must not abort the migration
                    cursor.execute(_TRGM)
            except DatabaseError:
                trigram = False  # search works without them, only slower (see services.messages.indexes)
        for sql in SQL.get(conn.vendor, []):
            if trigram or "gin_trgm_ops" not in sql:
                cursor.execute(sql)


def remove(apps, schema_editor) -> None:
    conn = schema_editor.connection
    if conn.vendor in SQL:
        with conn.cursor() as cursor:
            for name in NAMES:
                cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("connections", "0001_initial")]

    operations = [migrations.RunPython(create, remove)]
