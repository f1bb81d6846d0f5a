"""Search and filters of the message list: the search box's terms, the filter form's
values (parsed from query parameters), and the queryset filter they make.

Every term must occur in subject, sender or text body (for a mail without a text part —
HTML-only newsletters — in its HTML body); the indexes in `indexes` serve each arm.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Mapping

from django.db.models import Q, QuerySet
from django.utils import timezone

from ...models import StoredMessage
from . import search_words
from .indexes import SORT_KEY

MAX_SEARCH_TERMS = 8
MAX_TERM_LENGTH = 200


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

def search_terms(query: str) -> list[str]:
    """Words and "quoted phrases" of a search box, at most MAX_SEARCH_TERMS."""
    terms = [a or b for a, b in re.findall(r'"([^"]+)"|(\S+)', query or "")]
    return [t[:MAX_TERM_LENGTH] for t in terms if t.strip()][:MAX_SEARCH_TERMS]


def filter_messages(*, qs: QuerySet[StoredMessage], filters: MessageFilters) -> QuerySet[StoredMessage]:
    """Apply search and filters. Every term must occur in subject, sender or text body
    (for a mail without a text part — HTML-only newsletters — in its HTML body)."""
    for term in search_terms(filters.query):
        text = Q(text_body__icontains=term)
        html_only = Q(text_body="") & Q(html_body__icontains=term)
        # An indexed mail's words hold every piece of the term if its body holds the term
        # (services.messages.search_words). A term of one piece is in the body exactly when it
        # is in the words (it cannot span the single spaces between them): the words index
        # answers alone, no body is read. A phrase: the words find the candidates, the body
        # decides. The unindexed arms are spelled out so that PostgreSQL answers them from
        # message_unindexed_idx.
        pieces = search_words.pieces_of(term)
        words = Q(search_indexed=True)
        for piece in pieces:
            words &= Q(search_words__icontains=piece)
        indexed = words if len(pieces) == 1 else words & (text | html_only)
        unindexed = Q(search_indexed=False)
        qs = qs.filter(Q(subject__icontains=term) | Q(from_header__icontains=term)
                       | indexed | (unindexed & text) | (unindexed & html_only))
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


def parse_filters(*, params: Mapping[str, str]) -> tuple[MessageFilters, list[str]]:
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
