"""The poll's plan: batches of small mails in UID order, the last one tapered."""
from __future__ import annotations

from connections.services.inbound.pipeline import TAPER_MIN, plan


def test_the_last_batch_is_split_so_its_files_are_written_while_the_rest_is_fetched():
    uids = list(range(1, 2001))
    items = plan(uids, {u: 20_000 for u in uids}, max_size=10**9)
    assert [len(b) for _, b in items] == [200] * 9 + [100, 50, 50]
    assert [u for _, b in items for u in b] == uids  # every UID once, in order


def test_a_small_poll_and_large_mails_are_not_split():
    uids = list(range(1, TAPER_MIN))
    assert [len(b) for _, b in plan(uids, {u: 1000 for u in uids}, max_size=10**9)] == [TAPER_MIN - 1]
    sizes = {1: 1000, 2: 50 * 1024 * 1024}  # 2 is streamed alone (above INBOUND_STREAM_THRESHOLD)
    assert plan([1, 2], sizes, max_size=10**9) == [("small", [1]), ("large", [2])]
