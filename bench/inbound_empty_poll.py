#!/usr/bin/env python
"""The cost of an empty poll against the real Dovecot (IMAP, implicit TLS, loopback).

  bare    imaplib: connect + TLS handshake (CA-verified context), LOGIN, SELECT INBOX,
          UID SEARCH UNSEEN, LOGOUT.
  ours    TenantMail's poll() of the same empty mailbox: the same protocol steps plus the
          bookkeeping — PollRun row, mailbox lock taken and released, credential decrypted,
          pending-work query, connection state and next run updated.

Both alternate for --rounds rounds; prints the medians and the ratio (target <= 1.5x).

    .venv/bin/python bench/inbound_empty_poll.py [--rounds 40]
"""
from __future__ import annotations

import argparse
import imaplib
import ssl
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import django_setup, django_teardown, machine_note, make_connection, median, start_servers  # noqa: E402

DB = "bench_tm_inbound_empty"


def bare_cycle(servers, address: str, password: str) -> float:
    started = time.perf_counter()
    context = ssl.create_default_context(cafile=servers.ca_file)
    imap = imaplib.IMAP4_SSL(servers.host, servers.ports["imaps"], ssl_context=context)
    imap.login(address, password)
    imap.select("INBOX")
    imap.uid("SEARCH", "UNSEEN")
    imap.logout()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    servers = start_servers()
    django_setup(DB)
    try:
        from connections.models import PollOutcome
        from connections.services.polling import poll

        address, password = servers.add_user(local="empty")
        conn = make_connection(servers, address, password)
        poll(connection_id=conn.pk)  # warm-up: first UIDVALIDITY, imports, connections
        bare_cycle(servers, address, password)
        ours, bare = [], []
        for _ in range(args.rounds):
            bare.append(bare_cycle(servers, address, password))
            started = time.perf_counter()
            result = poll(connection_id=conn.pk)
            ours.append(time.perf_counter() - started)
            assert result.outcome == PollOutcome.SUCCESS and result.fetched == 0, result.summary()
        o, b = median(ours) * 1000, median(bare) * 1000
        print(f"ours, empty poll (protocol + bookkeeping), median of {args.rounds}: {o:6.1f} ms")
        print(f"bare imaplib cycle (connect, TLS, login, select, search, logout):   {b:6.1f} ms")
        print(f"ratio: {o / b:.2f}x (target <= 1.5x)")
        print(machine_note())
    finally:
        django_teardown(DB)
        servers.stop()


if __name__ == "__main__":
    main()
