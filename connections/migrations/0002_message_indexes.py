"""List and search indexes of the message pages: expression and trigram indexes that a
model's Meta cannot express portably (see connections.services.messages)."""
from django.db import migrations

from connections.services.messages import create_message_indexes, remove_message_indexes


class Migration(migrations.Migration):
    dependencies = [("connections", "0001_initial")]

    operations = [migrations.RunPython(create_message_indexes, remove_message_indexes)]
