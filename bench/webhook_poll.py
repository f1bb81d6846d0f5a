#!/usr/bin/env python
"""Benchmark: a poll of 2,000 mails with a webhook configured keeps >= 90 % of the rate of
the same poll without one (issue 17).

2,000 mails of about 20 KB (one in ten with a 200 KB attachment) are appended once to one
mailbox of the real Dovecot of tests/mailservers.py. Each round polls it twice, with a fresh
connection each time (selection all, keep on the server), interleaved:

  ours       a connection with a webhook to an HTTP receiver on loopback; a real Celery
             worker (a separate process, prefork, one child) delivers while the poll runs;
  reference  the same poll without a webhook.

After each poll with the webhook the benchmark waits until every delivery has arrived, and
after every poll until the worker has indexed its mails for search, so that no background
work of one contender runs during the other's poll. Medians of --rounds rounds (default 5), poll rate in
mails/s and the poll's CPU-seconds per mail (this process), plus the load average.

    .venv/bin/python bench/webhook_poll.py [--mails 2000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import (  # noqa: E402
    ROOT, django_setup, django_teardown, machine_note, mail_20k, make_connection, median, start_servers,
)

DB = "bench_tm_webhook_poll"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def start_receiver() -> tuple[subprocess.Popen, str]:
    """The webhook receiver: another system, so another process (not this one's CPU or GIL)."""
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/hook"


def start_worker() -> subprocess.Popen:
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}"
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tenantmail", "worker", "--pool", "prefork", "--concurrency", "1",
         # No -Q: all of this run's queues (they derive from its own CELERY_TASK_DEFAULT_QUEUE).
         "--loglevel", "WARNING", "--without-heartbeat",
         "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    servers = start_servers()
    django_setup(DB)
    worker = receiver = None
    try:
        from connections.models import StoredMessage, Webhook, WebhookDelivery
        from connections.services import webhooks
        from connections.services.inbound.poll import poll

        address, password = servers.add_user()
        mails = [mail_20k(i, attachment=os.urandom(150 * 1024) if i % 10 == 0 else None) for i in range(args.mails)]
        for start in range(0, len(mails), 200):
            servers.append(address, mails[start:start + 200])
        print(f"{len(mails)} mails appended; {machine_note()}", flush=True)
        receiver, url = start_receiver()
        worker = start_worker()

        def delivered() -> int:
            return WebhookDelivery.objects.filter(status="delivered").count()

        # Warm-up: the worker answers, the code paths are loaded.
        warm_address, warm_password = servers.add_user()
        servers.append(warm_address, [mail_20k(-1)])
        warm = make_connection(servers, warm_address, warm_password, selection="all", post_processing="keep")
        webhooks.save_webhook(webhook=Webhook(tenant=warm.tenant, connection=warm, url=url, secret="s"))
        warm.webhooks.update(cursor=0)
        poll(connection_id=warm.pk, trigger="warm-up")
        deadline = time.monotonic() + 120
        while delivered() < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        if delivered() < 1:
            print("the Celery worker did not deliver the warm-up webhook")
            return 1

        rates: dict[str, list[float]] = {"ours": [], "ref": []}
        cpus: dict[str, list[float]] = {"ours": [], "ref": []}
        for round_no in range(args.rounds):
            for who in ("ours", "ref"):
                conn = make_connection(servers, address, password, selection="all", post_processing="keep")
                if who == "ours":
                    webhooks.save_webhook(webhook=Webhook(tenant=conn.tenant, connection=conn, url=url,
                                                          secret="bench-secret"))
                before = delivered()
                c0, t0 = cpu(), time.perf_counter()
                result = poll(connection_id=conn.pk, trigger="bench")
                seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
                if result.stored != args.mails:
                    print(f"{who}: stored {result.stored} of {args.mails}: {result.summary()}")
                    return 1
                rates[who].append(result.stored / seconds)
                cpus[who].append(cpu_s / result.stored)
                line = f"round {round_no + 1} {who:4}: {result.stored / seconds:7.1f} mails/s ({seconds:.2f} s)"
                if who == "ours":
                    delivered_during = delivered() - before
                    deadline = time.monotonic() + 600
                    while delivered() - before < args.mails and time.monotonic() < deadline:
                        time.sleep(0.2)
                    line += (f", {delivered_during} delivered during the poll, all {delivered() - before} "
                             f"after {time.perf_counter() - t0:.1f} s")
                # Let the worker finish this poll's search indexing too, so that it does not
                # run during the next contender's poll.
                deadline = time.monotonic() + 600
                while StoredMessage.objects.filter(search_indexed=False).exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                print(line, flush=True)
        ours, ref = median(rates["ours"]), median(rates["ref"])
        print(f"\nCPU-seconds per mail (poll process): ours {median(cpus['ours']):.5f}, ref {median(cpus['ref']):.5f}")
        print(machine_note())
        cpu_ratio = median(cpus["ref"]) / median(cpus["ours"])
        print(f"CPU-based rate ratio (ref CPU-s per mail / ours): {cpu_ratio:.3f} — less sensitive to the "
              "machine's other load than the wall-clock rates")
        ratio = ours / ref
        print(f"ours (with webhook): {ours:.1f} mails/s   reference (without): {ref:.1f} mails/s   "
              f"ratio: {ratio:.3f} ({'meets' if ratio >= 0.9 else 'MISSES'} the 0.9 target)")
        return 0 if ratio >= 0.9 else 2
    finally:
        for proc in (worker, receiver):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        django_teardown(DB)
        servers.stop()


if __name__ == "__main__":
    sys.exit(main())
