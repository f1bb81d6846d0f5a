"""Reading stored messages: scoped lists, search, filters, keyset pages, details, files.

Everything here starts from `visible_messages(user=…)`, which limits rows to the
tenants the user belongs to (any role; superusers see all). A message, attachment or
raw file of another tenant is therefore simply "not found" — the views answer 404,
also for guessed ids.

Order: newest first by the message's Date header, except that a Date later than the
moment we fetched the mail counts as the fetch time (spam dated 2037 must not sit on
top forever) and a missing Date falls back to the fetch time:

    sort_at = LEAST(COALESCE(date, fetched_at), fetched_at)

Pages are keyset pages on (sort_at, id), so page 2,000 costs what page 1 costs and
no COUNT(*) runs. The indexes that make this fast (and the trigram indexes that make
substring search fast on PostgreSQL) are created by `ensure_message_indexes()`;
`MESSAGE_INDEX_SQL` holds the statements for a migration.
"""
from __future__ import annotations

import codecs
import datetime as dt
import email.errors
import email.header
import email.utils
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from urllib.parse import quote

from django.db import DatabaseError, transaction
from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from connections.services.parsing.attachments import safe_filename

from ..errors import TenantMailError
from ..models import Attachment, InboundConnection, StoredMessage
from . import safe_html, tenancy
from .sanitize import SanitizedHtml, normalise_content_id

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_SEARCH_TERMS = 8
MAX_TERM_LENGTH = 200
# Raster types a browser may show inline; everything else is only ever downloaded.
INLINE_IMAGE_TYPES = {"image/png", "image/gif", "image/jpeg", "image/pjpeg", "image/webp", "image/bmp", "image/avif",
                      "image/jpg", "image/x-png"}
# Common misspellings from mail programs, served under their registered names.
_IMAGE_TYPE_NAMES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
SORT_KEY = Least(Coalesce("date", "fetched_at"), F("fetched_at"))
_LIST_FIELDS = (
    "id", "tenant_id", "connection_id", "from_header", "subject", "date", "fetched_at",
    "has_attachments", "parsed", "parse_problems", "oversized", "connection__name", "tenant__name",
)


class MessageNotFound(TenantMailError):
    """No such message (or attachment) among the tenants the user may see."""


# --- Indexes ---------------------------------------------------------------------------

_TABLE = StoredMessage._meta.db_table
_SORT_PG = "LEAST(COALESCE(date, fetched_at), fetched_at) DESC, id DESC"
_SORT_SQLITE = 'MIN(COALESCE("date", "fetched_at"), "fetched_at") DESC, id DESC'
TRIGRAM_EXTENSION_SQL = "CREATE EXTENSION IF NOT EXISTS pg_trgm"
TEXT_INDEX_SQL = (f"CREATE INDEX IF NOT EXISTS message_text_trgm_idx ON {_TABLE} "
                  "USING gin (UPPER(text_body) gin_trgm_ops) WHERE search_indexed")
HTML_ONLY_INDEX_SQL = (f"CREATE INDEX IF NOT EXISTS message_html_only_trgm_idx ON {_TABLE} "
                       "USING gin (UPPER(html_body) gin_trgm_ops) WHERE text_body = '' AND search_indexed")
EXPRESSION_STATISTICS_SQL = [
    f"CREATE STATISTICS IF NOT EXISTS message_text_upper_stats ON (UPPER(text_body)) FROM {_TABLE}",
    f"CREATE STATISTICS IF NOT EXISTS message_html_upper_stats ON (UPPER(html_body)) FROM {_TABLE}",
]
MESSAGE_STATISTICS_NAMES = ["message_text_upper_stats", "message_html_upper_stats"]
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
        # The bodies' trigrams cost milliseconds a mail to extract: only mails flagged
        # search_indexed are in these (index_for_search flags them after the poll); search
        # reads the few others directly (through message_unindexed_idx).
        TEXT_INDEX_SQL,
        # HTML-only mails are searched in their HTML; a partial index keeps it to those.
        HTML_ONLY_INDEX_SQL,
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
    "message_subject_trgm_idx", "message_from_trgm_idx", "message_text_trgm_idx", "message_html_only_trgm_idx",
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
    """Put stored mails into the body search indexes: flag them search_indexed, oldest
    first, `batch` per short transaction (PostgreSQL computes their trigrams then). Returns
    how many were flagged. Safe to run in several workers at once (SKIP LOCKED) and again."""
    done = 0
    while limit is None or done < limit:
        size = batch if limit is None else min(batch, limit - done)
        with transaction.atomic():
            ids = list(StoredMessage.objects.filter(search_indexed=False).order_by("id")
                       .select_for_update(skip_locked=True).values_list("id", flat=True)[:size])
            if ids:
                StoredMessage.objects.filter(pk__in=ids).update(search_indexed=True)
        done += len(ids)
        if len(ids) < size:
            break
    return done


def create_message_indexes(apps, schema_editor) -> None:
    """`migrations.RunPython` forward step: `RunPython(create_message_indexes, remove_message_indexes)`."""
    ensure_message_indexes(using=schema_editor.connection)


def remove_message_indexes(apps, schema_editor) -> None:
    """`migrations.RunPython` reverse step."""
    drop_message_indexes(using=schema_editor.connection)


# --- Listing ---------------------------------------------------------------------------


def visible_messages(*, user: tenancy.UserLike) -> QuerySet[StoredMessage]:
    """Messages of every tenant the user belongs to (any role)."""
    return tenancy.scope(StoredMessage.objects.all(), user, action="view")


MAX_FILTER_CONNECTIONS = 500


def visible_connections(*, user: tenancy.UserLike, selected: int | None = None) -> list[dict]:
    """Inbound connections for the filter menu (id, name, tenant name), at most 500.

    An operator with thousands of connections gets the first 500 by tenant and name,
    plus the selected one, so the page stays small.
    """
    qs = tenancy.scope(InboundConnection.objects.all(), user, action="view").order_by("tenant__name", "name")
    rows = list(qs.values("id", "name", "tenant__name")[:MAX_FILTER_CONNECTIONS])
    if selected and all(r["id"] != selected for r in rows):
        rows += list(qs.filter(pk=selected).values("id", "name", "tenant__name"))
    return rows


def group_by_tenant(connections: list[dict]) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for row in connections:
        groups.setdefault(row["tenant__name"], []).append(row)
    return list(groups.items())


@dataclass(frozen=True)
class MessageFilters:
    query: str = ""
    connection_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    has_attachments: bool | None = None

    @property
    def active(self) -> bool:
        return bool(self.query or self.connection_id or self.date_from or self.date_to
                    or self.has_attachments is not None)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Cursor:
    sort_at: dt.datetime
    id: int

    def encode(self) -> str:
        # Integer microseconds: exact, unlike float timestamps.
        micros = (self.sort_at - _EPOCH) // dt.timedelta(microseconds=1)
        return f"{micros}-{self.id}"

    @classmethod
    def decode(cls, value: str) -> "Cursor | None":
        match = re.fullmatch(r"(-?\d{1,17})-(\d{1,19})", value or "")
        if not match:
            return None
        try:
            sort_at = _EPOCH + dt.timedelta(microseconds=int(match[1]))
        except OverflowError:
            return None
        return cls(sort_at=sort_at, id=int(match[2]))


@dataclass
class MessageRow:
    id: int
    sender_name: str
    sender_address: str
    subject: str
    date: dt.datetime | None
    date_iso: str
    date_label: str  # in the current time zone, "YYYY-MM-DD HH:MM"
    connection_name: str
    tenant_name: str
    has_attachments: bool
    problems: bool


@dataclass
class MessagePage:
    rows: list[MessageRow]
    newer: str | None  # cursor of the page before (newer messages), if any
    older: str | None  # cursor of the page after (older messages), if any


def search_terms(query: str) -> list[str]:
    """Words and "quoted phrases" of a search box, at most MAX_SEARCH_TERMS."""
    terms = [a or b for a, b in re.findall(r'"([^"]+)"|(\S+)', query or "")]
    return [t[:MAX_TERM_LENGTH] for t in terms if t.strip()][:MAX_SEARCH_TERMS]


def filter_messages(qs: QuerySet[StoredMessage], *, filters: MessageFilters) -> QuerySet[StoredMessage]:
    """Apply search and filters. Every term must occur in subject, sender or text body
    (for a mail without a text part — HTML-only newsletters — in its HTML body)."""
    for term in search_terms(filters.query):
        text = Q(text_body__icontains=term)
        html_only = Q(text_body="") & Q(html_body__icontains=term)
        # The body arms are spelled out per search_indexed value so that PostgreSQL can
        # answer each from an index: the partial trigram indexes, or message_unindexed_idx
        # for the mails not indexed yet.
        indexed, unindexed = Q(search_indexed=True), Q(search_indexed=False)
        qs = qs.filter(Q(subject__icontains=term) | Q(from_header__icontains=term)
                       | (indexed & text) | (indexed & html_only) | (unindexed & text) | (unindexed & html_only))
    if filters.connection_id:
        qs = qs.filter(connection_id=filters.connection_id)
    if filters.has_attachments is not None:
        qs = qs.filter(has_attachments=filters.has_attachments)
    tz = timezone.get_current_timezone()
    if filters.date_from or filters.date_to:
        qs = qs.alias(sort_at=SORT_KEY)
    if filters.date_from:
        start = dt.datetime.combine(filters.date_from, dt.time.min, tzinfo=tz)
        qs = qs.filter(sort_at__gte=start)
    if filters.date_to:
        end = dt.datetime.combine(filters.date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
        qs = qs.filter(sort_at__lt=end)
    return qs


def list_messages(
    *,
    user: tenancy.UserLike,
    filters: MessageFilters | None = None,
    older_than: str | None = None,
    newer_than: str | None = None,
    page_size: int | None = None,
) -> MessagePage:
    """One keyset page of the user's messages, newest first.

    `older_than` / `newer_than` are cursors from a previous page (`MessagePage.older`
    / `.newer`); an invalid cursor is ignored and the first page is shown.
    """
    items, newer, older = message_page(user=user, filters=filters, older_than=older_than, newer_than=newer_than,
                                       page_size=page_size)
    return MessagePage(rows=[_row(m) for m in items], newer=newer, older=older)


def message_page(
    *,
    user: tenancy.UserLike,
    filters: MessageFilters | None = None,
    older_than: str | None = None,
    newer_than: str | None = None,
    page_size: int | None = None,
    fields: Iterable[str] = (),
) -> tuple[list[StoredMessage], str | None, str | None]:
    """The rows of one keyset page (and the newer/older cursors): `list_messages` and the
    JSON API share it. `fields`: columns loaded besides the list's own."""
    filters = filters or MessageFilters()
    page_size = page_size or PAGE_SIZE
    qs = filter_messages(visible_messages(user=user), filters=filters)
    qs = qs.select_related("connection", "tenant").only(*_LIST_FIELDS, *fields).annotate(sort_at=SORT_KEY)
    before = Cursor.decode(older_than) if older_than else None
    after = Cursor.decode(newer_than) if newer_than and not before else None
    if after:
        # The page just newer than the cursor: walk the index upwards, then flip.
        qs = qs.filter(Q(sort_at__gte=after.sort_at) & (Q(sort_at__gt=after.sort_at) | Q(id__gt=after.id)))
        items = list(qs.order_by("sort_at", "id")[: page_size + 1])
        has_newer, has_older = len(items) > page_size, True
        items = items[:page_size][::-1]
    else:
        if before:
            # The redundant `sort_at <= x` bound lets the index scan start at the cursor.
            qs = qs.filter(Q(sort_at__lte=before.sort_at) & (Q(sort_at__lt=before.sort_at) | Q(id__lt=before.id)))
        items = list(qs.order_by("-sort_at", "-id")[: page_size + 1])
        has_older, has_newer = len(items) > page_size, before is not None
        items = items[:page_size]
    newer = Cursor(items[0].sort_at, items[0].id).encode() if items and has_newer else None
    older = Cursor(items[-1].sort_at, items[-1].id).encode() if items and has_older else None
    return items, newer, older


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _row(message: StoredMessage) -> MessageRow:
    name, address = sender(message.from_header)
    when = message.date or message.fetched_at
    local = timezone.localtime(when) if when else None
    return MessageRow(
        id=message.pk,
        sender_name=_shorten(name, 80),
        sender_address=address,
        subject=_shorten(decode_header_value(message.subject), 140),
        date=when,
        date_iso=local.isoformat() if local else "",
        date_label=local.strftime("%Y-%m-%d %H:%M") if local else "",
        connection_name=message.connection.name,
        tenant_name=message.tenant.name,
        has_attachments=message.has_attachments,
        problems=bool(message.parse_problems) or message.oversized,
    )


# --- Header helpers ----------------------------------------------------------------------


def decode_header_value(value: str) -> str:
    """Decode RFC 2047 words left in a header value; never raises."""
    if not value or "=?" not in value:
        return value or ""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return value


_SIMPLE_FROM = re.compile(r'^\s*(?:"([^"\\]*)"|([^"<>,;:@\\]*?))\s*<([^<>\s,;]+@[^<>\s,;]+)>\s*$')


def sender(from_header: str) -> tuple[str, str]:
    """(display name, address) of a From header, tolerant of broken headers."""
    decoded = decode_header_value(from_header)
    simple = _SIMPLE_FROM.match(decoded)
    if simple:  # the common 'Name <addr>' shape, without the full RFC 5322 parser
        name = (simple[1] if simple[1] is not None else simple[2] or "").strip()
        return name or simple[3], simple[3]
    try:
        name, address = email.utils.parseaddr(decoded)
    except (ValueError, IndexError, TypeError):
        name, address = "", ""
    if not name and not address:
        return decoded.strip(), ""
    return name or address, address


# --- Detail ------------------------------------------------------------------------------


def get_message(*, user: tenancy.UserLike, message_id: int) -> StoredMessage:
    try:
        return visible_messages(user=user).select_related("connection", "tenant").get(pk=message_id)
    except StoredMessage.DoesNotExist:
        raise MessageNotFound("No such message.") from None


def get_attachment(*, user: tenancy.UserLike, message_id: int, attachment_id: int) -> Attachment:
    """An attachment of a message the user may see; both tenant columns are checked."""
    qs = tenancy.scope(Attachment.objects.all(), user, action="view")
    qs = tenancy.scope(qs, user, action="view", field="message__tenant_id")
    try:
        return qs.select_related("message").get(pk=attachment_id, message_id=message_id)
    except Attachment.DoesNotExist:
        raise MessageNotFound("No such attachment.") from None


def attachments_of(*, message: StoredMessage) -> list[Attachment]:
    return list(Attachment.objects.filter(message=message, tenant_id=message.tenant_id).order_by("id"))


def inline_url_map(*, attachments: Iterable[Attachment], url_for) -> dict[str, str]:
    """Normalised Content-ID -> URL, for the attachments a browser may show inline."""
    result: dict[str, str] = {}
    for att in attachments:
        if att.content_id and is_inline_image(att):
            result.setdefault(normalise_content_id(att.content_id), url_for(att))
    return result


def is_inline_image(attachment: Attachment) -> bool:
    return attachment.content_type.split(";")[0].strip().lower() in INLINE_IMAGE_TYPES


def inline_content_type(attachment: Attachment) -> str:
    """The registered type of an inline image ("image/jpg" → "image/jpeg")."""
    value = stored_content_type(attachment)
    return _IMAGE_TYPE_NAMES.get(value, value)


def stored_safe_html(*, message: StoredMessage) -> str:
    """The message's sanitised HTML as stored at parse time. A mail stored before that
    existed is prepared now, once (bounded cost, services.safe_html), and kept."""
    if message.safe_html is not None:
        return message.safe_html
    prepared = safe_html.prepare(message.html_body)
    if message.parsed:
        changes: dict = {"safe_html": prepared.html}
        if prepared.note:
            changes["parse_problems"] = [*(message.parse_problems or []), prepared.note]
            message.parse_problems = changes["parse_problems"]
        StoredMessage.objects.filter(pk=message.pk, safe_html__isnull=True).update(**changes)
    message.safe_html = prepared.html
    return prepared.html


def sanitized_body(*, message: StoredMessage, load_remote: bool, url_for) -> SanitizedHtml:
    """The message's HTML body made safe, with cid: images pointing at `url_for(att)`.
    Serves the stored sanitised HTML: no parsing, linear in its size."""
    stored = stored_safe_html(message=message)
    inline = inline_url_map(attachments=attachments_of(message=message), url_for=url_for) if "cid:" in stored else {}
    return safe_html.render(stored=stored, inline=inline, load_remote=load_remote)


@dataclass
class HeaderLine:
    name: str
    value: str


MAX_HEADER_BYTES = 256 * 1024


def raw_headers(*, message: StoredMessage) -> list[HeaderLine]:
    """All header fields of the raw message, unfolded and RFC 2047-decoded.

    Reads only the header block (at most 256 KB); a missing raw file gives [].
    """
    try:
        with message.raw.open("rb") as fh:
            head = fh.read(MAX_HEADER_BYTES)
    except (OSError, ValueError):
        return []
    match = re.search(rb"\r?\n\r?\n", head)
    block = head[: match.start()] if match else head
    lines: list[HeaderLine] = []
    for raw_line in re.split(rb"\r?\n(?![ \t])", block):
        if b":" not in raw_line:
            continue
        name, _, value = raw_line.partition(b":")
        text = value.decode("utf-8", errors="replace") if _is_utf8(value) else value.decode("latin-1")
        text = re.sub(r"\r?\n[ \t]+", " ", text).strip()
        lines.append(HeaderLine(name=name.decode("ascii", errors="replace").strip(), value=decode_header_value(text)))
    return lines


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@dataclass
class Problem:
    text: str
    details: list[tuple[str, str]] = field(default_factory=list)


def parse_problems(*, message: StoredMessage) -> list[Problem]:
    """The stored parse problems in a displayable shape, whatever their JSON form."""
    problems = message.parse_problems or []
    if isinstance(problems, (str, dict)):
        problems = [problems]
    result = []
    for item in problems:
        if isinstance(item, dict):
            text = str(item.get("problem") or item.get("message") or item.get("error") or item.get("kind") or "")
            details = [(str(k), str(v)) for k, v in item.items() if str(v) != text]
            result.append(Problem(text=text or "Problem", details=details))
        else:
            result.append(Problem(text=str(item)))
    if not message.parsed and not message.oversized:
        result.insert(0, Problem(text="Not parsed yet: headers and bodies appear once the message is processed; the source is complete."))
    if message.oversized:
        result.insert(0, Problem(text="Larger than the connection's maximum message size: only the headers were stored."))
    return result


def raw_charset(*, message: StoredMessage) -> str:
    """Charset label for showing the raw source as text: UTF-8 when it decodes, else Latin-1.

    Latin-1 maps every byte to a character, so the source is always shown byte for byte.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with message.raw.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "iso-8859-1"
    except (OSError, ValueError):  # no raw file (purged by retention): the view answers 404
        return "utf-8"
    return "utf-8"


# --- Downloads ---------------------------------------------------------------------------

_FALLBACK_UNSAFE = re.compile(r'[^A-Za-z0-9._ ()\[\]+,=@-]')


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _FALLBACK_UNSAFE.sub("_", text).strip(" ._")


def content_disposition(*, filename: str, disposition: str = "attachment") -> str:
    """RFC 6266 header value: an ASCII fallback `filename` plus `filename*` in UTF-8."""
    name = safe_filename(filename, default="attachment")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ascii_ext = _ascii(ext)
    ascii_name = (_ascii(stem) or "attachment") + (f".{ascii_ext}" if ascii_ext else "")
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def stored_content_type(attachment: Attachment) -> str:
    """The stored content type if it is a well-formed type/subtype, else octet-stream."""
    value = (attachment.content_type or "").split(";")[0].strip().lower()
    if re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", value):
        return value
    return "application/octet-stream"


def parse_filters(params: Mapping[str, str]) -> tuple[MessageFilters, list[str]]:
    """Filters from query parameters; invalid values are ignored and reported."""
    errors: list[str] = []

    def date(name: str, label: str) -> dt.date | None:
        value = (params.get(name) or "").strip()
        if not value:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            errors.append(f"{label} is not a date (use YYYY-MM-DD); it was ignored.")
            return None

    connection_id = None
    raw_conn = (params.get("connection") or "").strip()
    if raw_conn:
        if raw_conn.isdigit() and len(raw_conn) < 19:
            connection_id = int(raw_conn)
        else:
            errors.append("Unknown connection; the filter was ignored.")
    attachments = {"yes": True, "no": False}.get((params.get("attachments") or "").strip())
    filters = MessageFilters(
        query=(params.get("q") or "").strip()[:1000],
        connection_id=connection_id,
        date_from=date("from", "From date"),
        date_to=date("to", "To date"),
        has_attachments=attachments,
    )
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        errors.append("The From date is after the To date, so nothing can match.")
    return filters, errors
