"""Benchmark: what a SOCKS5 hop costs — a poll of 2,000 mails (~20 KB each) through a real
SOCKS5 proxy on loopback against the same poll direct, both of the real Dovecot (IMAP,
implicit TLS, TLS end to end through the tunnel). Two proxies: Dante (danted, the SOCKS5
server companies run; no authentication) and microsocks (user/password; a minimal relay
that copies through a small buffer).

    .venv/bin/python bench/proxy.py [--rounds 3] [--mails 2000] [--proxies dante,microsocks]

Each round polls a fresh mailbox of `--mails` mails directly and others through each proxy,
interleaved (direct, dante, microsocks, direct, …); printed: the median wall time and
CPU-seconds per mail of each, and each ratio (goal: the hop costs < 10 %, ratio < 1.10).
Also the CPU budget of each poll, in CPU-seconds: our process, its forked helper processes
(prepare_pool.py), Dovecot and the proxy — the poll saturates both cores, so a hop's wall
time follows the CPU it adds to the machine, not only what it adds to our process.
Needs PostgreSQL and root (Dovecot), like the tests.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import (  # noqa: E402
    ROOT, django_setup, django_teardown, machine_note, mail_20k, make_connection, median, start_servers,
)

DB = "bench_tm_proxy"


def group_cpu(pgid: int, *, reaped: bool = False) -> float:
    """CPU-seconds used so far by the live processes of a process group (a proxy and its helpers);
    with `reaped`, also by their children that exited and were waited for (Dovecot's imap
    process of a session ends at LOGOUT)."""
    import os

    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # pgrp; utime and stime follow at 11 and 12, cutime, cstime
                total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return total / tick


def describe(budget: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.2f}" for name, value in budget.items()) + f"  total {sum(budget.values()):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--proxies", default="dante,microsocks")
    args = parser.parse_args()
    kinds = ("direct", *[k for k in args.proxies.split(",") if k])
    servers = start_servers()
    django_setup(DB)
    sys.path.insert(0, str(ROOT))
    from tests.proxies import start_dante_proxy, start_socks_proxy

    root = Path(tempfile.mkdtemp(prefix="tmpx-bench-"))
    root.chmod(0o777)
    proxies = {"microsocks": start_socks_proxy(root), "dante": start_dante_proxy(root)}
    try:
        from connections.models import PollOutcome
        from connections.services.inbound.poll import poll

        login = make_connection(servers, *servers.add_user())  # only for a deployed credential name
        from connections.models import UserCredential
        from connections.services.setup import credentials

        microsocks = proxies["microsocks"]
        cred = UserCredential(tenant=login.tenant, name="proxy-login", username=microsocks.username)
        credentials.save_artifact(credential=cred, password=microsocks.password)
        credentials.deploy(credential_id=cred.pk, user=None)
        via = {
            "direct": {},
            "microsocks": {"proxy_type": "socks5", "proxy_host": microsocks.host, "proxy_port": microsocks.port,
                           "proxy_credential_name": cred.name},
            "dante": {"proxy_type": "socks5", "proxy_host": proxies["dante"].host,
                      "proxy_port": proxies["dante"].port},
        }
        mails = [mail_20k(i) for i in range(args.mails)]

        def one(kind: str) -> tuple[float, float]:
            address, password = servers.add_user()
            servers.append(address, mails)
            conn = make_connection(servers, address, password, selection="all", post_processing="keep",
                                   **via[kind])
            before = {name: p.tunnels_to(conn.port) for name, p in proxies.items()}
            relay = group_cpu(proxies[kind].process.pid, reaped=True) if kind in proxies else 0.0
            others = others_cpu()
            cpu, wall = time.process_time(), time.perf_counter()
            result = poll(connection_id=conn.pk)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            budget = {"ours": cpu, **{name: v - others[name] for name, v in others_cpu().items()},
                      "proxy": group_cpu(proxies[kind].process.pid, reaped=True) - relay if kind in proxies else 0.0}
            budgets[kind].append(budget)
            if kind in proxies:
                relay_cpu[kind].append(budget["proxy"])
            assert result.outcome == PollOutcome.SUCCESS and result.stored == args.mails, result.summary()
            for name, p in proxies.items():  # the proxy's own log proves the path
                assert p.tunnels_to(conn.port) == before[name] + (1 if name == kind else 0), name
            return wall, cpu / args.mails

        def others_cpu() -> dict[str, float]:
            helpers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the poll waits for its helpers
            return {"helpers": helpers.ru_utime + helpers.ru_stime,
                    "dovecot": sum(group_cpu(g, reaped=True) for g in servers.dovecot_groups())}

        relay_cpu: dict[str, list[float]] = {kind: [] for kind in proxies}
        budgets: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
        one("direct")  # warm-up: imports, the TLS context, the database
        budgets["direct"].clear()
        times: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
        print(machine_note())
        for r in range(args.rounds):
            for kind in kinds:
                times[kind].append(one(kind))
                wall, cpu = times[kind][-1]
                print(f"  round {r + 1} {kind:<10} {wall:7.2f} s  {cpu * 1000:.3f} ms CPU/mail  CPU s: "
                      + describe(budgets[kind][-1]), flush=True)
        walls = {kind: median([w for w, _ in times[kind]]) for kind in kinds}
        print(f"poll of {args.mails} mails, median of {args.rounds} rounds:")
        for kind in kinds:
            relay = f"; the proxy's own CPU {median(relay_cpu[kind]):.2f} s per poll" if kind in proxies else ""
            print(f"  {kind:<10} {walls[kind]:7.2f} s  ({median([c for _, c in times[kind]]) * 1000:.3f} ms CPU/mail{relay})")
        for kind in kinds[1:]:
            print(f"  ratio {kind}/direct {walls[kind] / walls['direct']:.3f} (goal < 1.100)")
        print("CPU-seconds per poll (medians):")
        for kind in kinds:
            medians = {name: median([b[name] for b in budgets[kind]]) for name in budgets[kind][0]}
            print(f"  {kind:<10} " + describe(medians))
        print(machine_note())
    finally:
        for p in proxies.values():
            p.stop()
        servers.stop()
        django_teardown(DB)


if __name__ == "__main__":
    main()
