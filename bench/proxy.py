"""Benchmark: what a SOCKS5 hop costs — a poll of 2,000 mails (~20 KB each) through a real
SOCKS5 proxy on loopback (microsocks, user/password) against the same poll direct, both of
the real Dovecot (IMAP, implicit TLS, TLS end to end through the tunnel).

    .venv/bin/python bench/proxy.py [--rounds 3] [--mails 2000]

Each round polls a fresh mailbox of `--mails` mails directly and another one through the
proxy, alternating (direct, socks5, direct, socks5, …); printed: the median wall time and
CPU-seconds per mail of each, and the ratio (goal: the hop costs < 10 %, ratio < 1.10).
Needs PostgreSQL and root (Dovecot), like the tests.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import (  # noqa: E402
    ROOT, django_setup, django_teardown, machine_note, mail_20k, make_connection, median, start_servers,
)

DB = "bench_tm_proxy"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mails", type=int, default=2000)
    args = parser.parse_args()
    servers = start_servers()
    django_setup(DB)
    sys.path.insert(0, str(ROOT))
    from tests.proxies import start_socks_proxy

    proxy = start_socks_proxy(Path(tempfile.mkdtemp(prefix="tmpx-bench-")))
    try:
        from connections.models import PollOutcome
        from connections.services.polling import poll

        login = make_connection(servers, *servers.add_user())  # only for a deployed credential name
        from connections.models import UserCredential
        from connections.services.setup import credentials

        cred = UserCredential(tenant=login.tenant, name="proxy-login", username=proxy.username)
        credentials.save_artifact(credential=cred, password=proxy.password)
        credentials.deploy(credential_id=cred.pk, user=None)
        via = {"proxy_type": "socks5", "proxy_host": proxy.host, "proxy_port": proxy.port,
               "proxy_credential_name": cred.name}
        mails = [mail_20k(i) for i in range(args.mails)]

        def one(kind: str) -> tuple[float, float]:
            address, password = servers.add_user()
            servers.append(address, mails)
            conn = make_connection(servers, address, password, selection="all", post_processing="keep",
                                   **(via if kind == "socks5" else {}))
            before = proxy.tunnels_to(conn.port)
            cpu, wall = time.process_time(), time.perf_counter()
            result = poll(connection_id=conn.pk)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert result.outcome == PollOutcome.SUCCESS and result.stored == args.mails, result.summary()
            assert proxy.tunnels_to(conn.port) == before + (1 if kind == "socks5" else 0)
            return wall, cpu / args.mails

        one("direct")  # warm-up: imports, the TLS context, the database
        times: dict[str, list[tuple[float, float]]] = {"direct": [], "socks5": []}
        print(machine_note())
        for r in range(args.rounds):
            for kind in ("direct", "socks5"):
                times[kind].append(one(kind))
                wall, cpu = times[kind][-1]
                print(f"  round {r + 1} {kind:<7} {wall:7.2f} s  {cpu * 1000:.3f} ms CPU/mail", flush=True)
        direct = median([w for w, _ in times["direct"]])
        socks = median([w for w, _ in times["socks5"]])
        print(f"poll of {args.mails} mails, median of {args.rounds} rounds:")
        print(f"  direct  {direct:7.2f} s  ({median([c for _, c in times['direct']]) * 1000:.3f} ms CPU/mail)")
        print(f"  socks5  {socks:7.2f} s  ({median([c for _, c in times['socks5']]) * 1000:.3f} ms CPU/mail)")
        print(f"  ratio socks5/direct {socks / direct:.3f} (goal < 1.100)")
        print(machine_note())
    finally:
        proxy.stop()
        servers.stop()
        django_teardown(DB)


if __name__ == "__main__":
    main()
