"""Deferred parsing: mails stored raw (INBOUND_PARSE_DURING_POLL off, or a worker that died
before parsing) are parsed afterwards, by a task, with their attachments written then."""
from __future__ import annotations

from django.db import transaction

from connections.conf import conf
from ...models import Attachment, StoredMessage
from . import files
from .fetched import CHUNK, FetchedMail, new_spool_file, parse_mail
from .storage import Prepared, attachment_values


def parse_pending(*, connection_id: int, limit: int = 500) -> int:
    """Parse mails stored raw (INBOUND_PARSE_DURING_POLL off, or a worker that died)."""
    n = 0
    for pk in StoredMessage.objects.filter(connection_id=connection_id, parsed=False).values_list("pk", flat=True)[:limit]:
        if parse_stored(message_id=pk):
            n += 1
    return n


def parse_stored(*, message_id: int) -> bool:
    """Parse a message stored raw (deferred parsing). Returns True when it was parsed now."""
    msg = StoredMessage.objects.select_related("connection").get(pk=message_id)
    if msg.parsed:
        return False
    mail = FetchedMail(server_key=msg.server_key, size=msg.size, oversized=msg.oversized)
    if msg.size > settings_parse_in_memory_max() and not msg.oversized:
        fh, path = new_spool_file()
        with fh, msg.raw.open("rb") as src:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                fh.write(chunk)
        mail.path = path
    else:
        with msg.raw.open("rb") as src:
            mail.data = src.read()
    try:
        parsed = parse_mail(mail)
    finally:
        mail.cleanup()
    names = []
    try:
        for att in parsed.attachments:
            names.append(files.save_attachment(att))
    finally:
        parsed.cleanup()
    with transaction.atomic():
        locked = StoredMessage.objects.select_for_update().get(pk=message_id)
        if locked.parsed:
            files.delete_files(names)
            return False
        for key, value in parsed.header_fields().items():
            setattr(locked, key, value)
        locked.text_body, locked.html_body = parsed.text_body, parsed.html_body
        locked.safe_html = parsed.safe_html
        if parsed.search_words is not None:
            locked.search_words, locked.search_indexed = parsed.search_words, True
        locked.has_attachments = bool(parsed.attachments)
        locked.parse_problems = parsed.problems
        locked.parsed = True
        locked.save()
        prep = Prepared(mail=mail, sha=locked.raw_sha256, parsed=parsed, attachment_names=names)
        Attachment.objects.bulk_create([Attachment(message_id=locked.pk, **values)
                                        for values in attachment_values(locked.connection, prep)])
    return True


def settings_parse_in_memory_max() -> int:
    return int(conf.INBOUND_PARSE_IN_MEMORY_MAX)
