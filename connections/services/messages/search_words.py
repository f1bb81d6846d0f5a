"""The body's search words: what the body search index holds instead of the whole body.

Indexing a whole body for substring search costs PostgreSQL a sort of all its trigrams
(about 2 ms for 20 KB); the same words without their repetitions cost a fraction of that.
The document is the body's whitespace-separated tokens, each once, in order of first
appearance. If a search term occurs in the body, every whitespace-free piece of the term
occurs inside one token, so the mails whose words hold every piece are a superset of the
matches (the body itself is checked on those); a term of one piece is in the body exactly
when it is in the words, so the words alone answer it.
"""
from __future__ import annotations


def words_of(text: str) -> str:
    """Each whitespace-separated token of `text` once, in order, joined by single spaces."""
    return " ".join(dict.fromkeys(text.split()))


def pieces_of(term: str) -> list[str]:
    """The whitespace-free pieces of a search term (each must occur in one token)."""
    return term.split()


def searched_body(text_body: str, html_body: str) -> str:
    """The body a search looks in: the text part, or the HTML of a mail without one."""
    return text_body if text_body else html_body


def prepare_into(parsed) -> None:
    """Set `parsed.search_words` (a parsing.ParsedMessage) from its searched body."""
    parsed.search_words = words_of(searched_body(parsed.text_body, parsed.html_body))
