"""List and search indexes of the message pages (expression and trigram indexes that the
model's Meta cannot express portably); see connections.services.messages."""
from django.db import migrations


def create_indexes(apps, schema_editor):
    from connections.services.messages import ensure_message_indexes

    ensure_message_indexes(using=schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("connections", "0001_initial")]

    operations = [migrations.RunPython(create_indexes, migrations.RunPython.noop)]
