"""services.messages.search_words: the words document is an exact pre-filter for substring search."""
from __future__ import annotations

import random

import pytest

from connections.models import StoredMessage
from connections.services.messages import indexes, queries, search
from connections.services.messages.search_words import pieces_of, searched_body, words_of


def test_each_token_once_in_order_of_first_appearance():
    text = "The fox\tand the\u00a0FOX, the fox.\n\nThe fox"
    assert words_of(text) == "The fox and the FOX, fox."
    assert words_of("") == "" and words_of(" \r\n ") == ""
    assert searched_body("text", "<p>html</p>") == "text" and searched_body("", "<p>html</p>") == "<p>html</p>"


def test_every_piece_of_a_substring_of_the_body_is_inside_the_words():
    """The property search relies on: whatever part of the body a term is, each of its
    whitespace-free pieces occurs in the words document (no mail can be missed)."""
    rng = random.Random(14)
    vocabulary = ["invoice", "Straße", "naïve", "x", "über-long-token-with-dashes", "a.b@c.d", "日本語", "\u00a0", "\t", " "]
    for _ in range(300):
        body = "".join(rng.choice(vocabulary) + rng.choice([" ", "\n", "", "  "]) for _ in range(40))
        words = words_of(body).upper()
        start = rng.randrange(len(body))
        term = body[start:start + rng.randint(1, 30)]
        for piece in pieces_of(term):
            assert piece.upper() in words, (body, term, piece)


def test_search_finds_phrases_and_pieces_of_words_of_indexed_mails(tenants, store, build):
    alice, conn = tenants["alice"], tenants["conn_a"]
    store(connection=conn, raw=build(subject="one", text="Please pay the zanzibar quarterly invoice today"))
    store(connection=conn, raw=build(subject="two", text=None, html="<p>zanzibar <b>newsletter</b></p>"))
    store(connection=conn, raw=build(subject="three", text="quarterly zanzibar, not the phrase"))
    assert indexes.index_for_search() == 3
    assert all(m.search_words for m in StoredMessage.objects.filter(connection=conn))

    def found(query: str) -> set[str]:
        return {r.subject for r in queries.list_messages(user=alice, filters=search.MessageFilters(query=query)).rows}

    assert found("zanzibar") == {"one", "two", "three"}
    assert found('"zanzibar quarterly"') == {"one"}, "a phrase: the body decides, not the words"
    assert found('"ibar quar"') == {"one"}, "a phrase across two words, cut in both"
    assert found("VOIC") == {"one"} and found("newsletter</b>") == {"two"}
    assert found('"quarterly zanzibar,"') == {"three"}
    assert found('"invoice zanzibar"') == set()


@pytest.mark.parametrize("text", ["", "only one token"])
def test_indexing_an_empty_or_tiny_body(tenants, store, build, text):
    message = store(connection=tenants["conn_a"], raw=build(subject="s", text=text or None, html=None))
    indexes.index_for_search()
    message.refresh_from_db()
    assert message.search_indexed is True and message.search_words == words_of(message.text_body)


def test_a_term_of_one_piece_is_in_the_body_exactly_when_it_is_in_the_words():
    """Why search answers a one-piece term from the words alone (no body is read)."""
    rng = random.Random(21)
    vocabulary = ["invoice", "Straße", "naïve", "x", "a.b@c.d", "日本語", "\u00a0", "\t", " ", "\n", "ab"]
    for _ in range(500):
        body = "".join(rng.choice(vocabulary) for _ in range(30))
        candidates = ["invoice", "ice", "e x", "xab", "ab", "Straße", "日本", "b@c", "voicex", "naïveab"]
        for term in candidates:
            if len(pieces_of(term)) == 1:
                assert (term.upper() in body.upper()) == (term.upper() in words_of(body).upper()), (body, term)


def test_a_purged_mail_is_not_found_by_its_old_words(tenants, store, build):
    from connections.services.messages import retention

    alice, conn = tenants["alice"], tenants["conn_a"]
    message = store(connection=conn, raw=build(subject="s", text="the zanzibar report"))
    indexes.index_for_search()
    assert {r.id for r in queries.list_messages(user=alice, filters=search.MessageFilters(query="zanzibar")).rows} == {message.pk}
    retention._strip([message.pk], now=message.fetched_at, files=[])
    message.refresh_from_db()
    assert message.search_words == "" and message.text_body == ""
    assert not queries.list_messages(user=alice, filters=search.MessageFilters(query="zanzibar")).rows
