#!/usr/bin/env python
"""Memory of ingesting one mail with a 50 MB attachment, against the real Dovecot.

Each contender runs in a fresh subprocess that measures its own peak RSS growth
(VmHWM from /proc/self/status, reset just before the work, minus VmRSS then; all imports
and set-up done):

  ours       TenantMail's poll(): RFC822.SIZE first, then BODY.PEEK[]<offset.length> chunks
             streamed to a spool file, hashed in chunks, parsed by the streaming MIME splitter
             (the attachment decoded line by line into its own file), both moved into file
             storage. Target: peak RSS growth under 1x the mail's size.
  bare       a bare imaplib UID FETCH BODY.PEEK[] of the same mail (the whole literal in
             memory, nothing stored or parsed): about 1.3x.

Interleaved rounds (bare, ours, ours, bare, …; each a fresh process), medians of the
rounds, CPU seconds of the work beside wall time, the load average.

    .venv/bin/python bench/inbound_bigmail.py [--mb 50] [--rounds 3]
"""
from __future__ import annotations

import argparse
import imaplib
import json
import os
import statistics
import ssl
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import django_setup, django_teardown, machine_note, mail_20k, make_connection  # noqa: E402

DB = "bench_tm_inbound_bigmail"


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def start_measuring() -> int:
    """Current RSS, with the peak (VmHWM) reset to it. ru_maxrss would not do: on Linux it
    keeps the peak of the parent process image across fork + exec."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak RSS of this process
    except OSError:
        pass
    return _status_kb("VmRSS")


def peak_kb() -> int:
    return _status_kb("VmHWM")


def child(kind: str, info: dict) -> None:
    if kind == "ours":
        django_setup(DB)
        try:
            from connections.models import StoredMessage
            from connections.services.inbound.poll import poll

            class _Servers:  # what make_connection needs from the fixture
                host = info["host"]

                def mail_settings(self, **kw):
                    from connections.mail import MailSettings

                    return MailSettings(protocol="imap", host=info["host"], port=info["port"], protection="ssl_tls",
                                        authentication="plain", username=kw["username"], trusted_ca=info["ca_pem"])

            conn = make_connection(_Servers(), info["address"], info["password"], post_processing="keep",
                                   selection="all")
            before = start_measuring()
            started, cpu = time.perf_counter(), time.process_time()
            result = poll(connection_id=conn.pk)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            after = peak_kb()
            msg = StoredMessage.objects.get(connection=conn)
            att = msg.attachments.get()
            out = {"grow_kb": after - before, "seconds": seconds, "cpu": cpu, "stored": result.stored, "size": msg.size,
                   "attachment": att.size, "outcome": result.outcome, "error": result.error}
        finally:
            django_teardown(DB)
    else:
        context = ssl.create_default_context(cafile=info["ca_file"])
        imap = imaplib.IMAP4_SSL(info["host"], info["port"], ssl_context=context)
        imap.login(info["address"], info["password"])
        imap.select("INBOX", readonly=True)
        uid = imap.uid("SEARCH", "ALL")[1][0].split()[0]
        before = start_measuring()
        started, cpu = time.perf_counter(), time.process_time()
        typ, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
        size = len(data[0][1])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        after = peak_kb()
        imap.logout()
        out = {"grow_kb": after - before, "seconds": seconds, "cpu": cpu, "size": size}
    print("RESULT " + json.dumps(out))


def run_child(kind: str, info: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(info)], capture_output=True,
                          text=True, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][7:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.mailservers import start_mail_servers

    servers = start_mail_servers()
    try:
        address, password = servers.add_user(local="bigmail")
        mail = mail_20k(0, attachment=os.urandom(args.mb * 1024 * 1024))
        servers.append(address, [mail])
        size = len(mail)
        info = {"host": servers.host, "port": servers.ports["imaps"], "ca_file": servers.ca_file,
                "ca_pem": servers.ca_pem, "address": address, "password": password}
        del mail
        runs: dict[str, list[dict]] = {"bare": [], "ours": []}
        for rnd in range(args.rounds):
            for kind in (("bare", "ours") if rnd % 2 == 0 else ("ours", "bare")):
                runs[kind].append(run_child(kind, info))
        for ours in runs["ours"]:
            assert ours["stored"] == 1 and ours["attachment"] == args.mb * 1024 * 1024, ours

        def med(kind: str, key: str) -> float:
            return statistics.median(r[key] for r in runs[kind])

        mail_mb = size / 1024 / 1024
        ours_x = med("ours", "grow_kb") / 1024 / mail_mb
        bare_x = med("bare", "grow_kb") / 1024 / mail_mb
        print(f"mail: {mail_mb:.1f} MB on the server ({args.mb} MB attachment, base64); medians of "
              f"{args.rounds} interleaved rounds")
        print(f"ours (poll: streamed fetch, store, streaming parse): peak RSS growth {med('ours', 'grow_kb') / 1024:7.1f} MB "
              f"= {ours_x:.2f}x the mail (target < 1x), {med('ours', 'seconds'):.1f} s, CPU {med('ours', 'cpu'):.1f} s")
        print(f"bare imaplib UID FETCH BODY.PEEK[]:                   peak RSS growth {med('bare', 'grow_kb') / 1024:7.1f} MB "
              f"= {bare_x:.2f}x the mail, {med('bare', 'seconds'):.1f} s, CPU {med('bare', 'cpu'):.1f} s")
        print(f"ours / bare: {ours_x / bare_x if bare_x else float('nan'):.2f}")
        print(machine_note())
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
