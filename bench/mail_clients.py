"""Protocol-layer benchmark: connections.mail's clients against the bare stdlib clients.

Against the real Dovecot/Postfix of tests/mailservers.py (started here; needs root like the
tests), on loopback, interleaved rounds, median. Prints our figure, the reference figure and
the ratio for:

  smtp send     SMTPClient.send() vs smtplib.sendmail(), N messages of ~10 KB over ONE
                connection each (STARTTLS + AUTH on the submission port)
  imap fetch    IMAPClient.fetch_many() vs bare imaplib UID FETCH BODY.PEEK[] in UID ranges of
                200, 2,000 mails of ~20 KB (one in ten with a 200 KB attachment)
  empty poll    connect, TLS, login, select, search, logout: IMAPClient vs bare imaplib
  big mail      IMAPClient.fetch_to() of one 50 MB mail into a file: peak RSS growth vs size

    .venv/bin/python bench/mail_clients.py [--rounds 5] [--smtp-messages 500]
"""
from __future__ import annotations

import argparse
import base64
import imaplib
import os
import smtplib
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connections.mail import IMAPClient, SMTPClient  # noqa: E402
from tests.mailservers import start_mail_servers  # noqa: E402


def mail(i: int, size: int) -> bytes:
    body = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        f"From: bench@example.test\r\nTo: x@example.test\r\nSubject: bench {i}\r\n"
        f"Message-ID: <bench-{i}-{os.urandom(4).hex()}@example.test>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + body


def ratio_line(name: str, ours: float, bare: float, unit: str) -> str:
    return f"{name:<12} ours {ours:10.1f} {unit}   bare {bare:10.1f} {unit}   ratio {ours / bare:5.2f}"


CPU_MS: dict[str, list[float]] = {}  # "part contender" -> CPU milliseconds per item, per round


def cpu_line(part: str, unit: str) -> str:
    ours, bare = (statistics.median(CPU_MS[f"{part} {name}"]) for name in ("ours", "bare"))
    return f"{'':12} CPU of this process (median): ours {ours:.2f} ms/{unit}, bare {bare:.2f} ms/{unit}"


def bench_smtp(servers, rounds: int, n: int) -> tuple[float, float]:
    sender, password = servers.add_user()
    messages = [mail(i, 10_000) for i in range(n)]
    settings = servers.mail_settings(protocol="smtp", protection="starttls_mandatory", authentication="plain", username=sender)
    context = ssl.create_default_context(cafile=servers.ca_file)

    def ours(rcpt: str) -> float:
        started = time.perf_counter()
        with SMTPClient(settings, password) as smtp:
            for raw in messages:
                smtp.send(sender=sender, recipients=[rcpt], message=raw)
        return time.perf_counter() - started

    def bare(rcpt: str) -> float:
        started = time.perf_counter()
        smtp = smtplib.SMTP(servers.host, servers.ports["submission"], timeout=60)
        smtp.starttls(context=context)
        smtp.login(sender, password)
        for raw in messages:
            smtp.sendmail(sender, [rcpt], raw)
        smtp.quit()
        return time.perf_counter() - started

    rates = {"ours": [], "bare": []}
    for rnd in range(rounds + 1):
        for name, fn in (("ours", ours), ("bare", bare))[:: 1 if rnd % 2 else -1]:
            rcpt, _ = servers.add_user()
            time.sleep(1.1)  # Postfix notices the new recipient map by its mtime, in seconds
            cpu = time.process_time()
            seconds = fn(rcpt)
            cpu = time.process_time() - cpu
            servers.wait_for_messages(rcpt, count=n, timeout=300)
            if rnd:  # round 0 warms up
                rates[name].append(n / seconds)
                CPU_MS.setdefault(f"smtp {name}", []).append(cpu / n * 1000)
    return statistics.median(rates["ours"]), statistics.median(rates["bare"])


def bench_imap(servers, rounds: int) -> tuple[tuple[float, float], tuple[float, float]]:
    address, password = servers.add_user()
    mails = [mail(i, 200_000 if i % 10 == 0 else 20_000) for i in range(2000)]
    servers.append(address, mails)
    settings = servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain", username=address)
    empty, empty_pw = servers.add_user()
    empty_settings = servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain", username=empty)
    context = ssl.create_default_context(cafile=servers.ca_file)

    def ours() -> float:
        started = time.perf_counter()
        count = 0
        with IMAPClient(settings, password) as imap:
            imap.select("INBOX", readonly=True)
            for _uid, raw in imap.fetch_many(imap.search_uids(unseen_only=False), batch_size=200):
                count += 1
        assert count == 2000
        return time.perf_counter() - started

    def bare() -> float:
        started = time.perf_counter()
        imap = imaplib.IMAP4_SSL(servers.host, servers.ports["imaps"], ssl_context=context)
        imap.login(address, password)
        imap.select("INBOX", readonly=True)
        uids = [int(u) for u in imap.uid("SEARCH", "ALL")[1][0].split()]
        count = 0
        for start in range(0, len(uids), 200):
            chunk = uids[start:start + 200]
            _typ, data = imap.uid("FETCH", f"{chunk[0]}:{chunk[-1]}", "(BODY.PEEK[])")
            count += sum(1 for part in data if isinstance(part, tuple))
        imap.logout()
        assert count == 2000
        return time.perf_counter() - started

    def ours_empty() -> float:
        started = time.perf_counter()
        with IMAPClient(empty_settings, empty_pw) as imap:
            imap.select("INBOX")
            imap.search_uids(unseen_only=True)
        return time.perf_counter() - started

    def bare_empty() -> float:
        started = time.perf_counter()
        imap = imaplib.IMAP4_SSL(servers.host, servers.ports["imaps"], ssl_context=context)
        imap.login(empty, empty_pw)
        imap.select("INBOX")
        imap.uid("SEARCH", "UNSEEN")
        imap.logout()
        return time.perf_counter() - started

    fetch = {"ours": [], "bare": []}
    cycle = {"ours": [], "bare": []}
    for rnd in range(rounds + 1):
        for name, fn in (("ours", ours), ("bare", bare))[:: 1 if rnd % 2 else -1]:
            cpu = time.process_time()
            seconds = fn()
            cpu = time.process_time() - cpu
            if rnd:
                fetch[name].append(2000 / seconds)
                CPU_MS.setdefault(f"fetch {name}", []).append(cpu / 2000 * 1000)
        for _ in range(10):
            for name, fn in (("ours", ours_empty), ("bare", bare_empty)):
                cpu = time.process_time()
                seconds = fn()
                cpu = time.process_time() - cpu
                if rnd:
                    cycle[name].append(seconds * 1000)
                    CPU_MS.setdefault(f"cycle {name}", []).append(cpu * 1000)
    return (
        (statistics.median(fetch["ours"]), statistics.median(fetch["bare"])),
        (statistics.median(cycle["ours"]), statistics.median(cycle["bare"])),
    )


def rss_kb(field: str = "VmRSS") -> int:
    """Current RSS, or with field="VmHWM" the peak RSS of this process image (reset at exec,
    unlike getrusage's ru_maxrss, which a child inherits from its parent)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def bench_big(servers) -> tuple[int, int]:
    """Stream one 50 MB mail in a fresh child process; its peak RSS (VmHWM) minus its RSS just
    before the fetch is the growth, free of this process's earlier allocations."""
    import json
    import subprocess

    address, password = servers.add_user()
    big = mail(0, 50 * 1024 * 1024)
    size = len(big)
    servers.append(address, [big])
    del big
    settings = servers.mail_settings(protocol="imap", protection="ssl_tls", authentication="plain", username=address)
    job = json.dumps({"settings": settings.__dict__, "password": password})
    child = subprocess.run([sys.executable, __file__, "--big-child"], input=job, capture_output=True, text=True,
                           timeout=600, check=True)
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    assert answer["written"] == size, answer
    return answer["growth"], size


def big_child() -> None:
    import json

    from connections.mail import MailSettings

    job = json.loads(sys.stdin.read())
    settings = MailSettings(**job["settings"])
    with IMAPClient(settings, job["password"]) as imap, tempfile.TemporaryFile() as sink:
        imap.select("INBOX")
        uid = imap.search_uids(unseen_only=False)[0]
        size = imap.fetch_sizes([uid])[uid]
        base = rss_kb()
        written = imap.fetch_to(uid, sink, size=size)
        peak = rss_kb("VmHWM")
    print(json.dumps({"written": written, "growth": max(0, peak - base) * 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smtp-messages", type=int, default=500)
    parser.add_argument("--only", choices=["smtp", "imap", "big"], action="append",
                        help="run only these parts (repeatable); default: all")
    parser.add_argument("--big-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.big_child:
        big_child()
        return
    parts = set(args.only or ["smtp", "imap", "big"])
    servers = start_mail_servers()
    try:
        if "smtp" in parts:
            smtp = bench_smtp(servers, args.rounds, args.smtp_messages)
            print(ratio_line("smtp send", *smtp, "mails/s"), " (target: ratio >= 0.80)", flush=True)
            print(cpu_line("smtp", "mail"), flush=True)
        if "imap" in parts:
            fetch, cycle = bench_imap(servers, args.rounds)
            print(ratio_line("imap fetch", *fetch, "mails/s"), flush=True)
            print(cpu_line("fetch", "mail"), flush=True)
            print(ratio_line("empty poll", *cycle, "ms   "), " (lower is better)", flush=True)
            print(cpu_line("cycle", "poll"), flush=True)
        if "big" in parts:
            growth, size = bench_big(servers)
            print(f"big mail     fetch_to of a {size / 1e6:.1f} MB mail: peak RSS growth {growth / 1e6:.1f} MB "
                  f"= {growth / size:.2f}x the mail's size (target < 1x; bare imaplib about 1.3x)")
        load = os.getloadavg()
        print(f"medians of {args.rounds} interleaved rounds; load average {load[0]:.2f} (1 min) / "
              f"{load[1]:.2f} (5 min) on {os.cpu_count()} CPUs")
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
