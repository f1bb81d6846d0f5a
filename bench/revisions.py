#!/usr/bin/env python
"""Every benchmark under bench/ for two revisions of the code, in one interleaved run (issue 14).

For each script: before, after, before, after, … (--runs N times each), the before side from a
detached `git worktree` of --before (under /tmp, `.venv` and `var/bench` symlinked to this
tree's, removed at the end), the after side from this tree (or a worktree of --after). Our
headline figures are read from each script's own output; printed per script: the medians,
after/before and the min–max ranges of both sides, the load average at the start and end,
and a markdown block for BENCHMARKS.md (also written as JSON with --json).

    .venv/bin/python bench/revisions.py [--before pre14] [--after REV] [--runs 3]
        [--only outbound_send,proxy] [--quick] [--json /tmp/bench-14.json]

Run it as root with PostgreSQL and Redis on 127.0.0.1, like the scripts themselves. Every
invocation's output is kept in a log directory (printed) for reading afterwards.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
N = r"(-?\d+(?:,\d{3})*(?:\.\d+)?)"  # a printed number, thousands separators allowed
LOWER, HIGHER = "lower", "higher"


def idle_row(column: int) -> str:
    """bench/idle.py's table row (the last one: the largest size): mailboxes, then 8 numbers."""
    return r"^\s*\d+" + "".join(rf"\s+{N}" if c == column else r"\s+[\d.]+" for c in range(1, 9)) + r"\s*$"


# script: ({"full"|"quick"|"tiny": args}, [(figure, regex with the number as group 1, better)]).
# A figure is the last match in the output; alternatives (a|b) cover both revisions' wording.
SCRIPTS: dict[str, tuple[dict[str, list[str]], list[tuple[str, str, str]]]] = {
    "api_messages": ({"full": ["--messages", "50000", "--requests", "200", "--rounds", "3"],
                      "quick": ["--messages", "10000", "--requests", "100", "--rounds", "3"],
                      "tiny": ["--messages", "5000", "--requests", "20", "--rounds", "1"]}, [
        ("api p95 ms", rf"ours \(/api/v1/messages/ p95, median of \d+ rounds\): {N} ms", LOWER),
        ("page p95 ms", rf"/messages/ page p95: {N} ms", LOWER),
        ("api CPU s/request", rf"CPU-seconds per request: api {N}", LOWER)]),
    "dispatch": ({"full": ["--connections", "10000", "--rounds", "3"],
                  "quick": ["--connections", "2000", "--rounds", "3"],
                  "tiny": ["--connections", "100", "--rounds", "1"]}, [
        ("claimed + published s", rf"poll tasks \(batches of \d+\) published in {N} s", LOWER),
        ("beat CPU µs/connection", rf"beat-side CPU {N} µs per connection", LOWER),
        ("ours/reference", rf"ratio ours / reference: {N}", LOWER)]),
    "hostile_pages": ({"full": ["--rounds", "3", "--ref-max-depth", "0"],
                       "quick": ["--rounds", "1", "--ref-max-depth", "0"],
                       "tiny": ["--rounds", "1", "--ref-max-depth", "0"]}, [
        ("slowest page s", rf"Slowest page overall: {N} s", LOWER),
        ("corpus slowest page s", rf"Public corpus: \d+ mails, 4 pages each; slowest page {N} s", LOWER),
        ("worker CPU s, depth 250", rf"depth 250 repeated \(5 MB\)\s+{N}", LOWER),
        ("worker CPU s, newsletter", rf"flat newsletter \(3\.5 MB\)\s+{N}", LOWER)]),
    "idle": ({"full": ["--sizes", "300"], "quick": ["--sizes", "50"], "tiny": ["--sizes", "3"]}, [
        ("p95 s (largest size)", idle_row(2), LOWER), ("RSS MB (largest size)", idle_row(4), LOWER),
        ("CPU s/mail (largest size)", idle_row(8), LOWER)]),
    "inbound_bigmail": ({"full": [], "quick": ["--mb", "20", "--rounds", "3"], "tiny": ["--mb", "2", "--rounds", "1"]}, [
        ("ours peak RSS growth MB", rf"ours \(poll[^\n]*peak RSS growth\s+{N} MB", LOWER),
        ("ours CPU s", rf"ours \(poll[^\n]*, CPU {N} s", LOWER),
        ("ours/bare memory", rf"ours / bare: {N}", LOWER)]),
    "inbound_empty_poll": ({"full": [], "quick": ["--rounds", "20"], "tiny": ["--rounds", "3"]}, [
        ("ours ms", rf"ours, empty poll [^\n]*: +{N} ms", LOWER),
        ("ours CPU ms", rf"ours, empty poll [^\n]*ms, CPU {N} ms", LOWER),
        ("ours/bare", rf"ratio: {N}x", LOWER)]),
    "inbound_ingest": ({"full": ["--mails", "1000", "--rounds", "3"], "quick": ["--mails", "500", "--rounds", "3"], "tiny": ["--mails", "30", "--rounds", "1"]}, [
        ("raw mails/s", rf"ours, raw ingest[^\n]*:\s+{N} mails/s", HIGHER),
        ("raw CPU ms/mail", rf"ours, raw ingest[^\n]*CPU {N} ms/mail", LOWER),
        ("full mails/s", rf"ours, full processing[^\n]*:\s+{N} mails/s", HIGHER),
        ("full CPU ms/mail", rf"ours, full processing[^\n]*CPU {N} ms/mail", LOWER),
        ("search indexing s", rf"of which search indexing {N} s", LOWER),
        ("raw/bare", rf"= {N}x bare", HIGHER),
        ("full/django-mailbox", rf"/ reference: {N}x", HIGHER)]),
    "mail_clients": ({"full": [], "quick": ["--rounds", "3", "--smtp-messages", "200"],
                      "tiny": ["--rounds", "1", "--smtp-messages", "10"]}, [
        ("smtp send mails/s", rf"smtp send\s+ours\s+{N}", HIGHER),
        ("smtp CPU ms/mail", rf"smtp send[^\n]*\n[^\n]*ours {N} ms/mail", LOWER),
        ("smtp ours/bare", rf"smtp send[^\n]*ratio\s+{N}", HIGHER),
        ("imap fetch mails/s", rf"imap fetch\s+ours\s+{N}", HIGHER),
        ("fetch CPU ms/mail", rf"imap fetch[^\n]*\n[^\n]*ours {N} ms/mail", LOWER),
        ("fetch ours/bare", rf"imap fetch[^\n]*ratio\s+{N}", HIGHER),
        ("empty poll ms", rf"empty poll\s+ours\s+{N}", LOWER),
        ("empty poll CPU ms", rf"empty poll[^\n]*\n[^\n]*ours {N} ms/poll", LOWER),
        ("empty poll ours/bare", rf"empty poll[^\n]*ratio\s+{N}", LOWER),
        ("big mail RSS growth x", rf"= {N}x the mail's size", LOWER)]),
    "messages_list": ({"full": ["--messages", "50000", "--requests", "200"],
                       "quick": ["--messages", "10000", "--requests", "100"],
                       "tiny": ["--messages", "5000", "--requests", "20"]}, [
        ("p95 ms", rf"ours \(p95\): {N} ms", LOWER),
        ("p50 ms", rf"list page over \d+ requests: p50 {N} ms", LOWER),
        ("CPU ms/request", rf"CPU of this process {N} ms per request", LOWER)]),
    "monitoring": ({"full": ["--connections", "10000", "--rounds", "3", "--requests", "40"],
                    "quick": ["--connections", "2000", "--rounds", "3", "--requests", "20"],
                    "tiny": ["--connections", "100", "--rounds", "1", "--requests", "3"]}, [
        ("watchdog pass s", rf"watchdog pass: median {N} s", LOWER),
        ("watchdog CPU µs/connection", rf"watchdog pass: [^\n]*?CPU {N} µs/connection", LOWER),
        ("watchdog ours/ref", rf"ratio ours/ref {N}", LOWER),
        ("operations page p95 ms", rf"operations page: p95 {N} ms", LOWER)]),
    "outbound_crash": ({"full": ["--kills", "10"], "quick": ["--kills", "5"], "tiny": ["--kills", "2"]}, [
        ("stuck", rf"crash test: [^\n]*stuck {N}", LOWER),
        ("lost", rf"crash test: [^\n]*lost {N}", LOWER),
        ("delivered twice", rf"crash test: [^\n]*delivered twice {N}", LOWER),
        ("test s", rf"PASSED in {N} s", LOWER)]),
    "outbound_enqueue": ({"full": [], "quick": ["--rounds", "3", "--per-round", "1000"],
                          "tiny": ["--rounds", "1", "--per-round", "50"]}, [
        ("ours messages/s", rf"^\s*ours\s+median\s+{N} messages/s", HIGHER),
        ("ours CPU ms/message", rf"^\s*ours\s+median[^\n]*messages/s\s+{N} CPU-ms", LOWER),
        ("ours/post-office", rf"ours / post-office: {N}", HIGHER)]),
    "outbound_send": ({"full": [], "quick": ["--rounds", "3", "--per-round", "100"],
                       "tiny": ["--rounds", "1", "--per-round", "10"]}, [
        ("ours mails/s", rf"^\s*ours\s+median\s+{N} mails/s", HIGHER),
        ("ours CPU ms/mail", rf"^\s*ours\s+median[^\n]*CPU {N} ms per mail", LOWER),
        ("ours-1-session mails/s", rf"ours-1-session\s+median\s+{N} mails/s", HIGHER),
        ("ours/bare", rf"ours / bare smtplib loop:\s+{N}", HIGHER),
        ("ours/post-office", rf"ours / post-office:\s+{N}", HIGHER)]),
    "proxy": ({"full": [], "quick": ["--rounds", "3", "--mails", "500"], "tiny": ["--rounds", "1", "--mails", "20"]}, [
        ("direct poll s", rf"^\s*direct\s+{N} s\s+\(", LOWER),
        ("direct CPU ms/mail", rf"^\s*direct\s+[\d.]+ s\s+\({N} ms CPU/mail", LOWER),
        ("microsocks/direct", rf"ratio (?:socks5|microsocks)/direct {N}", LOWER),
        ("dante/direct", rf"ratio dante/direct {N}", LOWER)]),
    "scale": ({"full": ["--connections", "3000", "--minutes", "2"], "quick": ["--connections", "1000", "--minutes", "2"],
               "tiny": ["--connections", "50", "--minutes", "1.2"]}, [
        ("polls/s", rf"polls started: \d+ in \d+ s = {N}/s", HIGHER),
        ("lag p95 s", rf"dispatch lag [^\n]*p95 {N} s", LOWER),
        ("overdue connections", rf"without a poll at the end: {N}", LOWER),
        ("beat + worker CPU ms/poll", rf"CPU of beat \+ worker processes: \d+ s = {N} ms", LOWER)]),
    "webhook_poll": ({"full": [], "quick": ["--mails", "500", "--rounds", "3"], "tiny": ["--mails", "20", "--rounds", "1"]}, [
        ("with webhook mails/s", rf"ours \(with webhook\): {N} mails/s", HIGHER),
        ("with/without", rf"reference \(without\): [\d.]+ mails/s\s+ratio: {N}", HIGHER),
        ("CPU s/mail with webhook", rf"CPU-seconds per mail \(poll process\): ours {N}", LOWER),
        ("CPU ratio", rf"CPU-based rate ratio [^:]*: {N}", HIGHER)]),
}
OPTIONAL = {"dante/direct"}  # printed only by scripts newer than pre14: not a failure when missing
ENV = {"TENANTMAIL_CORPUS": "/work/shared/corpus/public", "PYTHONUNBUFFERED": "1"}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def git(*args: str, cwd: Path = HERE) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def worktree(rev: str, tmp: Path, side: str) -> Path:
    """A detached worktree of rev under tmp, sharing this tree's .venv and var/bench."""
    path = tmp / side
    git("worktree", "add", "--detach", str(path), rev)
    (path / ".venv").symlink_to((HERE / ".venv").resolve())
    (HERE / "var" / "bench").mkdir(parents=True, exist_ok=True)  # the reference virtualenvs, made once
    (path / "var").mkdir(exist_ok=True)
    (path / "var" / "bench").symlink_to(HERE / "var" / "bench")
    return path


def describe(tree: Path) -> str:
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no", cwd=tree) else ""
    return f"{git('describe', '--tags', '--always', cwd=tree)} ({git('rev-parse', '--short', 'HEAD', cwd=tree)}){dirty}"


def run_once(tree: Path, script: str, args: list[str], log: Path, timeout: float) -> tuple[dict, float, int]:
    """One invocation: (figures found, wall seconds, exit code); the output goes to log."""
    started = time.monotonic()
    cmd = [str(tree / ".venv" / "bin" / "python"), f"bench/{script}.py", *args]
    proc = subprocess.Popen(cmd, cwd=tree, env={**ENV, **os.environ}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate()
        rc, stderr = -1, f"--- timed out after {timeout:.0f} s ---\n{stderr}"
    out = f"{stdout}\n--- stderr ---\n{stderr}"
    log.write_text(" ".join(cmd) + "\n" + out)
    figures = {}
    for name, pattern, _ in SCRIPTS[script][1]:
        found = re.findall(pattern, out, re.M)
        if found:
            figures[name] = float(found[-1].replace(",", ""))
    return figures, time.monotonic() - started, rc


def summarise(script: str, runs: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for name, _, better in SCRIPTS[script][1]:
        side = {s: [r[name] for r in runs[s] if name in r] for s in ("before", "after")}
        row = {"figure": name, "better": better, **{f"{s}_values": v for s, v in side.items()}}
        for s, values in side.items():
            row[s] = statistics.median(values) if values else None
        b, a = row["before"], row["after"]
        row["ratio"] = a / b if a is not None and b else None
        row["note"] = verdict(side["before"], side["after"], better)
        rows.append(row)
    return rows


def verdict(before: list[float], after: list[float], better: str) -> str:
    if not before or not after:
        return "not extracted" if not (before or after) else f"only {'after' if after else 'before'}"
    if len(before) < 2 or len(after) < 2:
        return "no ranges (1 run)"
    if max(before) < min(after) or max(after) < min(before):  # ranges apart
        up = min(after) > max(before)
        return "better (ranges apart)" if up == (better == HIGHER) else "WORSE (ranges apart)"
    return "within noise (ranges overlap)"


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def span(values: list[float]) -> str:
    return f"{fmt(min(values))}–{fmt(max(values))}" if values else "—"


def table(rows: list[dict], script: str | None = None) -> list[str]:
    cols = ["script"] * bool(script) + ["figure (better)", "before", "after", "after/before", "before range",
                                          "after range", "noise"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "—"
        lines.append("| " + (f"`{script}` | " if script else "") + f"{r['figure']} ({r['better']}) | {fmt(r['before'])} | "
                     f"{fmt(r['after'])} | {ratio} | {span(r['before_values'])} | {span(r['after_values'])} | {r['note']} |")
    return lines


def measure(script: str, trees: dict[str, Path], size: str, runs: int, logs: Path, timeout: float) -> dict:
    """before, after, before, after, … for one script; prints each invocation and the table."""
    args = SCRIPTS[script][0][size]
    print(f"\n## {script} {' '.join(args) or '(default arguments)'}", flush=True)
    found: dict[str, list[dict]] = {"before": [], "after": []}
    failures = []
    for i in range(1, runs + 1):
        for side in ("before", "after"):
            if not (trees[side] / "bench" / f"{script}.py").exists():
                continue
            log = logs / f"{script}.{side}.{i}.log"
            figures, wall, rc = run_once(trees[side], script, args, log, timeout)
            found[side].append(figures)
            missing = [n for n, _, _ in SCRIPTS[script][1] if n not in figures and n not in OPTIONAL]
            if rc not in (0, 2) or missing:  # 2: a script's own target missed, figures printed
                failures.append(f"{side} {i}: exit {rc}, not found {missing} ({log})")
            print(f"  {side:6} {i}/{runs}: {wall:5.0f} s, load {os.getloadavg()[0]:.2f}, exit {rc}; "
                  + ", ".join(f"{k} {fmt(v)}" for k, v in figures.items()), flush=True)
    rows = summarise(script, found)
    print("\n".join(table(rows)) + "".join(f"\n  ! {f}" for f in failures), flush=True)
    return {"args": args, "rows": rows, "failures": failures}


def markdown(meta: dict, results: dict) -> str:
    lines = [f"Before/after, {meta['started']}–{meta['ended']} UTC: `bench/revisions.py {meta['command']}`, "
             f"before {meta['before']}, after {meta['after']}; medians of {meta['runs']} interleaved invocations "
             f"per side; load average {meta['load_start']} at the start, {meta['load_end']} at the end.", "",
             "Sizes: " + "; ".join(f"`{s}` {' '.join(r['args']) or 'defaults'}" for s, r in results.items()), ""]
    lines += table([], script="x")
    for script, r in results.items():
        lines += table(r["rows"], script=script)[2:]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="pre14", help="git revision (default: the tag pre14)")
    parser.add_argument("--after", help="git revision (default: this working tree as it is)")
    parser.add_argument("--runs", type=int, default=3, help="invocations per side and script (default 3)")
    parser.add_argument("--only", help="comma-separated script names, e.g. outbound_send,proxy")
    parser.add_argument("--quick", action="store_true", help="reduced sizes for every script")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # proves the regexes only
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per invocation (default 1800)")
    parser.add_argument("--json", type=Path, help="also write the results here (after every script)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SCRIPTS)
    if unknown := [n for n in names if n not in SCRIPTS]:
        parser.error(f"unknown scripts {unknown}; known: {', '.join(SCRIPTS)}")
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    tmp = Path(tempfile.mkdtemp(prefix="tm-revisions-"))
    (logs := tmp / "logs").mkdir()
    now = lambda: datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")  # noqa: E731
    meta = {"command": " ".join(sys.argv[1:]), "runs": args.runs, "sizes": size, "started": now(),
            "load_start": load()}
    trees: dict[str, Path] = {}
    results: dict[str, dict] = {}
    try:
        trees["before"] = worktree(args.before, tmp, "before")
        trees["after"] = worktree(args.after, tmp, "after") if args.after else HERE
        meta.update({s: describe(t) for s, t in trees.items()})
        print(f"before: {meta['before']} at {trees['before']}\nafter:  {meta['after']} at {trees['after']}\n"
              f"{args.runs} interleaved runs per side, {size} sizes; logs in {logs}\n"
              f"load average at the start {meta['load_start']}", flush=True)
        for script in names:
            results[script] = measure(script, trees, size, args.runs, logs, args.timeout)
            meta.update(ended=now()[-5:], load_end=load())
            if args.json:  # after every script: an interrupted run keeps what it measured
                args.json.write_text(json.dumps({**meta, "scripts": results}, indent=1, ensure_ascii=False))
    finally:
        for side, tree in trees.items():
            if tree != HERE:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=HERE)
    print(f"\nload average at the end {meta['load_end']}")
    print("\n```markdown\n" + markdown(meta, results) + "\n```")
    if bad := [s for s, r in results.items() if r["failures"]]:
        print(f"\nnot every figure extracted or a script failed: {', '.join(bad)} (see the ! lines)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
