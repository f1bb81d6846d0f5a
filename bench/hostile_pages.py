#!/usr/bin/env python
"""The message pages of hostile mails (issue 22): every page under 1 s.

Mails are stored through the worker's path (`inbound.storage.store_batch`: parse, sanitise once),
then each page is requested through the whole Django stack in-process (test Client:
middleware, session, auth, view, template): the detail page, the body frame, both with
"load remote images", and the list. Figures are the server's wall time and CPU seconds per
page; the goal is < 1 s for every page of every mail.

The reference is what the pages did before: sanitise the HTML body with nh3 when the page
is served (the detail page and the frame each did it). It is run interleaved with ours
(ours, ref, ours, …) on the bodies where it finishes in reasonable time; for deeper ones
its cost is estimated from its N² growth and marked "est.".

Also measured: the worker's one-time cost of parsing + sanitising each mail, and, with
--corpus (default: ../shared/corpus/public when present), the slowest page over the
public corpus.

    .venv/bin/python bench/hostile_pages.py [--rounds 3] [--no-corpus]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound_common import ROOT, django_setup, django_teardown, machine_note  # noqa: E402

DB = "bench_tm_hostile_pages"
GOAL_S = 1.0


def html_mail(subject: str, html: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Mallory <mallory@attacker.test>"
    msg["To"] = "victim@example.test"
    msg["Subject"] = subject
    msg["Date"] = "Sat, 21 Nov 2026 08:00:00 +0000"
    msg.set_content("plain text part")
    msg.add_alternative(html, subtype="html", cte="base64")
    return msg.as_bytes()


def deep_multipart(subject: str, levels: int) -> bytes:
    parts = [f"From: m@attacker.test\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n".encode()]
    parts += [f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode() for i in range(levels)]
    parts.append(b"Content-Type: text/html\r\n\r\n<p>bottom</p>\r\n")
    parts += [f"--b{i}--\r\n".encode() for i in reversed(range(levels))]
    return b"".join(parts)


def newsletter(size: int) -> str:
    row = ('<tr><td style="padding:4px;color:#333"><a href="https://example.com/x?id=1">Item</a> '
           '<img src="https://cdn.example.com/p.png" alt="p"> <b>bold</b> text &amp; more</td></tr>\n')
    return "<table>" + row * (size // len(row)) + "</table>"


# name -> (raw mail, depth of the HTML for the reference's estimate or None)
def hostile_set() -> dict[str, tuple[bytes, int | None]]:
    return {
        "nested <div> 20k (0.1 MB)": (html_mail("n20k", "<div>" * 20_000 + "x"), 20_000),
        "nested <div> 50k (0.25 MB)": (html_mail("n50k", "<div>" * 50_000 + "x"), 50_000),
        "nested <div> 100k (0.5 MB)": (html_mail("n100k", "<div>" * 100_000 + "x"), 100_000),
        "nested <b> 1M (3 MB)": (html_mail("n1m", "<b>" * 1_000_000 + "x"), 1_000_000),
        "nested <div> 2M (10 MB)": (html_mail("n10mb", "<div>" * 2_000_000 + "x"), 2_000_000),
        "depth 250 repeated (5 MB)": (html_mail("osc", ("<div>" * 250 + "x" + "</div>" * 250) * 1800), None),
        "flat newsletter (3.5 MB)": (html_mail("flat", newsletter(3_500_000)), None),
        "multipart 2,000 deep": (deep_multipart("mp2000", 2000), None),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-corpus", action="store_true")
    parser.add_argument("--ref-max-depth", type=int, default=50_000,
                        help="run the reference on bodies at most this deep (deeper: estimated)")
    args = parser.parse_args()
    print(machine_note() + " — a shared, loaded machine: absolute figures are noisy")
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    django_setup(DB)
    try:
        run(args)
    finally:
        django_teardown(DB)
    print(machine_note())


def run(args) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from connections.models import InboundConnection, Membership, Role, StoredMessage, Tenant
    from connections.services.inbound.fetched import FetchedMail
    from connections.services.inbound.storage import store_batch
    from connections.services.messages.sanitize import sanitize_html

    tenant = Tenant.objects.create(name="Bench", slug="bench")
    conn = InboundConnection.objects.create(tenant=tenant, name="in", host="imap.example.test", credential_name="x")
    user = get_user_model().objects.create_user("reader", password="x")
    Membership.objects.create(user=user, tenant=tenant, role=Role.VIEWER)
    client = Client()
    client.force_login(user)

    def store(name: str, raw: bytes) -> tuple[int, float]:
        mail = FetchedMail(server_key=f"bench:{uuid.uuid4().hex}", size=len(raw), data=raw)
        c0 = time.process_time()
        [outcome] = store_batch(connection=conn, mails=[mail])
        return outcome.pk, time.process_time() - c0

    def page(url: str) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return time.perf_counter() - w0, time.process_time() - c0

    def pages_of(pk: int) -> dict[str, tuple[float, float]]:
        urls = {"detail": reverse("messages:detail", args=[pk]), "frame": reverse("messages:body", args=[pk])}
        urls["detail+remote"] = urls["detail"] + "?remote=1"
        urls["frame+remote"] = urls["frame"] + "?remote=1"
        return {k: page(u) for k, u in urls.items()}

    def reference(html: str) -> tuple[float, float]:
        """The old detail + frame: nh3 on the stored body, twice."""
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(2):
            sanitize_html(html=html, inline_url=lambda cid: None, load_remote=False)
        return time.perf_counter() - w0, time.process_time() - c0

    print(f"\nHostile mails: medians of {args.rounds} rounds (ours, ref, ours, …); "
          "page = server wall s / CPU s; goal < 1 s per page")
    print(f"{'mail':30} {'worker parse+sanitise CPU s':>28} {'slowest page ours wall/CPU':>28} "
          f"{'ref detail+frame wall/CPU':>28}")
    worst = 0.0
    ref_fit: tuple[int, float] | None = None
    for name, (raw, depth) in hostile_set().items():
        pk, worker_cpu = store(name, raw)
        message = StoredMessage.objects.get(pk=pk)
        ours_rounds: list[tuple[float, float]] = []
        ref_rounds: list[tuple[float, float]] = []
        run_ref = bool(message.html_body) and (depth is None or depth <= args.ref_max_depth)
        for _ in range(args.rounds):
            results = pages_of(pk)
            ours_rounds.append(max(results.values()))
            if run_ref:
                ref_rounds.append(reference(message.html_body))
        wall = statistics.median(r[0] for r in ours_rounds)
        cpu = statistics.median(r[1] for r in ours_rounds)
        worst = max(worst, wall)
        if ref_rounds:
            rw = statistics.median(r[0] for r in ref_rounds)
            rc = statistics.median(r[1] for r in ref_rounds)
            ref = f"{rw:10.3f} / {rc:.3f}"
            if depth:
                ref_fit = (depth, rc)
        elif not message.html_body:
            ref = "(no HTML body)"
        elif depth and ref_fit:
            est = ref_fit[1] * (depth / ref_fit[0]) ** 2
            ref = f"est. {est:,.0f} CPU s"
        else:
            ref = "not run"
        print(f"{name:30} {worker_cpu:28.3f} {wall:18.3f} / {cpu:.3f}  {ref:>28}")

    list_times = [page(reverse("messages:list")) for _ in range(args.rounds)]
    print(f"{'list page (all of them)':30} {'':28} {statistics.median(t[0] for t in list_times):18.3f} / "
          f"{statistics.median(t[1] for t in list_times):.3f}")

    corpus = None if args.no_corpus else Path(os.environ.get("TENANTMAIL_CORPUS", ROOT.parent / "shared" / "corpus" / "public"))
    if corpus is not None and not corpus.is_dir():
        print(f"\nPublic corpus not found at {corpus} (set TENANTMAIL_CORPUS): not measured")
    elif corpus is not None:
        files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.name not in ("SOURCES.md", "MANIFEST.tsv"))
        slowest = (0.0, 0.0, "")
        for path in files:
            pk, _ = store(path.name, path.read_bytes())
            results = pages_of(pk)
            w, c = max(results.values())
            if w > slowest[0]:
                slowest = (w, c, path.name)
        worst = max(worst, slowest[0])
        print(f"\nPublic corpus: {len(files)} mails, 4 pages each; slowest page {slowest[0]:.3f} s wall / "
              f"{slowest[1]:.3f} s CPU ({slowest[2]})")
    verdict = "met" if worst < GOAL_S else "MISSED"
    print(f"\nSlowest page overall: {worst:.3f} s (goal < {GOAL_S:g} s: {verdict})")


if __name__ == "__main__":
    main()
