#!/usr/bin/env python
"""The cost of an empty poll against the real Dovecot (IMAP, implicit TLS, loopback).

  bare    imaplib: connect + TLS handshake (CA-verified context), LOGIN, SELECT INBOX,
          UID SEARCH UNSEEN, LOGOUT.
  ours    TenantMail's poll() of the same empty mailbox: the same protocol steps plus the
          bookkeeping — PollRun row, mailbox lock taken and released, credential decrypted,
          pending-work query, connection state and next run updated.

Both alternate for --rounds rounds; prints the medians and the ratio (target <= 1.5x).

With --kept N the mailbox holds N mails that a first poll stored (selection "all", post-
processing "keep"), as a mailbox that keeps its mail does, and the bare cycle is connect,
TLS, login, select, logout (issue 21: target <= 1.3x at 100,000 mails); CPU seconds of this
process per poll are printed beside the wall time.

    .venv/bin/python bench/inbound_empty_poll.py [--rounds 40] [--kept 100000]
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


def bare_cycle(servers, address: str, password: str, *, search: bool = True) -> float:
    started = time.perf_counter()
    context = ssl.create_default_context(cafile=servers.ca_file)
    imap = imaplib.IMAP4_SSL(servers.host, servers.ports["imaps"], ssl_context=context)
    imap.login(address, password)
    imap.select("INBOX")
    if search:
        imap.uid("SEARCH", "UNSEEN")
    imap.logout()
    return time.perf_counter() - started


def small_mail(i: int) -> bytes:
    return (f"From: a@example.test\r\nTo: b@example.test\r\nSubject: kept {i}\r\n"
            f"Message-ID: <kept-{i}@example.test>\r\n\r\nbody {i}\r\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--kept", type=int, default=0, help="mails kept in the mailbox (stored by a first poll)")
    args = parser.parse_args()
    servers = start_servers()
    django_setup(DB)
    try:
        from connections.models import PollOutcome
        from connections.services.inbound.poll import poll

        address, password = servers.add_user(local="empty")
        search = not args.kept
        if args.kept:
            servers.append(address, (small_mail(i) for i in range(args.kept)))
            conn = make_connection(servers, address, password, selection="all", post_processing="keep")
        else:
            conn = make_connection(servers, address, password)
        first = poll(connection_id=conn.pk)  # warm-up (stores the kept mails): UIDVALIDITY, imports, connections
        assert first.stored == args.kept, first.summary()
        bare_cycle(servers, address, password, search=search)
        ours, bare, ours_cpu, bare_cpu = [], [], [], []
        for _ in range(args.rounds):
            cpu = time.process_time()
            bare.append(bare_cycle(servers, address, password, search=search))
            bare_cpu.append(time.process_time() - cpu)
            started, cpu = time.perf_counter(), time.process_time()
            result = poll(connection_id=conn.pk)
            ours.append(time.perf_counter() - started)
            ours_cpu.append(time.process_time() - cpu)
            assert result.outcome == PollOutcome.SUCCESS and result.fetched == 0, result.summary()
        o, b = median(ours) * 1000, median(bare) * 1000
        kept = f", {args.kept:,} mails kept" if args.kept else ""
        steps = "select, search, logout" if search else "select, logout"
        print(f"ours, empty poll (protocol + bookkeeping{kept}), median of {args.rounds}: {o:6.1f} ms, "
              f"CPU {median(ours_cpu) * 1000:.1f} ms")
        print(f"bare imaplib cycle (connect, TLS, login, {steps}): {b:6.1f} ms, CPU {median(bare_cpu) * 1000:.1f} ms")
        print(f"ratio: {o / b:.2f}x (target <= {1.3 if args.kept else 1.5}x)")
        print(machine_note())
    finally:
        django_teardown(DB)
        servers.stop()


if __name__ == "__main__":
    main()
