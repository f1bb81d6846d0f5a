"""Reading stored messages: scoped lists, keyset pages, one message, one attachment.

Everything here starts from `visible_messages(user=…)`, which limits rows to the
tenants the user belongs to (any role; superusers see all). A message, attachment or
raw file of another tenant is therefore simply "not found" — the views answer 404,
also for guessed ids.

Pages are keyset pages on (sort_at, id) — the order is `indexes.SORT_KEY` — so page
2,000 costs what page 1 costs and no COUNT(*) runs.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Iterable

from django.db.models import Q, QuerySet
from django.utils import timezone

from ...errors import TenantMailError
from ...models import Attachment, InboundConnection, StoredMessage
from ..access import tenancy
from .headers import decode_encoded_words, sender
from .indexes import SORT_KEY
from .search import MessageFilters, filter_messages

PAGE_SIZE = 50
_LIST_FIELDS = (
    "id", "tenant_id", "connection_id", "from_header", "subject", "date", "fetched_at",
    "has_attachments", "parsed", "parse_problems", "oversized", "connection__name", "tenant__name",
)


class MessageNotFound(TenantMailError):
    """No such message (or attachment) among the tenants the user may see."""


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
    qs = filter_messages(qs=visible_messages(user=user), filters=filters)
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
        subject=_shorten(decode_encoded_words(message.subject), 140),
        date=when,
        date_iso=local.isoformat() if local else "",
        date_label=local.strftime("%Y-%m-%d %H:%M") if local else "",
        connection_name=message.connection.name,
        tenant_name=message.tenant.name,
        has_attachments=message.has_attachments,
        problems=bool(message.parse_problems) or message.oversized,
    )

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
