"""addresses.py: address lists as people type them."""
from __future__ import annotations


def test_split_addresses_as_people_type_them():
    from connections.services.outbound.addresses import split_addresses

    assert split_addresses(['a@x.example, "Doe, John" <j@x.example>', "b@x.example", "  "]) == [
        "a@x.example", '"Doe, John" <j@x.example>', "b@x.example"]
    assert split_addresses(["Zoë <z@bücher.example>"]) == ["Zoë <z@bücher.example>"]
    assert split_addresses(None) == []
