#!/usr/bin/env python
"""Crash recovery with many real SIGKILLs (issue 19): 50 kills -> 0 stuck, 0 lost, 0 doubled
except uncertain ones.

Runs tests/outbound/test_recovery_crash.py's big-batch test with TM_CRASH_KILLS (default 50) kills
of a real sending process (`send_due` in a subprocess, lease 1 s) at random moments, against
the fault-injecting SMTP server, counting deliveries at the server by Message-ID; the
connection resends uncertain messages by itself. It prints the test's summary line.

    .venv/bin/python bench/outbound_crash.py [--kills 50] [--messages 2000] [--seed 19]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres), like the tests.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--messages", type=int, default=0, help="default: 60 per kill, at least 300")
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    env = {**os.environ, "TM_CRASH_KILLS": str(args.kills), "TM_CRASH_SEED": str(args.seed),
           "TM_TEST_DB": os.environ.get("TM_TEST_DB", "bench_crash")}
    if args.messages:
        env["TM_CRASH_MESSAGES"] = str(args.messages)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/outbound/test_recovery_crash.py::test_sigkills_in_the_middle_of_big_batches_nothing_stuck_lost_or_doubled"],
        cwd=str(ROOT), env=env, capture_output=True, text=True)
    summary = [line for line in proc.stdout.splitlines() if line.startswith("crash test:")]
    print("\n".join(summary) or proc.stdout[-3000:])
    print(f"{'PASSED' if proc.returncode == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s, "
          f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f} (shared, loaded machine)")
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-2000:])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
