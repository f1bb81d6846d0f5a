"""Hold an IMAP IDLE session for every push connection and poll on new mail (docs/push.md)."""
from __future__ import annotations

import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from connections.services.push.runner import IdleRunner, RunnerOptions


class Command(BaseCommand):
    help = (
        "Run the IMAP IDLE push service: one IDLE session per enabled IMAP connection with "
        "push on (one event loop, many sessions), queueing the connection's normal poll when "
        "the server reports new mail. Several run_idle processes share the connections (a "
        "lease per connection). Runs until SIGTERM/SIGINT; exit status 0 then."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--max-sessions", type=int, default=2000,
                            help="Most IDLE sessions this process holds (default 2000).")
        parser.add_argument("--lease-ttl", type=int, default=60,
                            help="Seconds until another process takes over the connections of a "
                                 "process that stopped renewing (default 60).")
        parser.add_argument("--tick", type=float, default=5.0,
                            help="Seconds between lease renewals and claims (default 5).")
        parser.add_argument("--reissue-after", type=float, default=25 * 60,
                            help="Seconds before IDLE is re-issued (at most 1500 = 25 minutes).")

    def handle(self, *args, max_sessions: int, lease_ttl: int, tick: float, reissue_after: float, **options) -> None:
        if max_sessions < 1 or lease_ttl < 5 or tick <= 0 or tick * 2 > lease_ttl or not 1 <= reissue_after <= 1500:
            raise CommandError(
                "invalid options: --max-sessions >= 1, --lease-ttl >= 5, 0 < --tick <= lease-ttl/2, "
                "1 <= --reissue-after <= 1500"
            )
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        runner = IdleRunner(RunnerOptions(max_sessions=max_sessions, ttl_seconds=lease_ttl, tick_seconds=tick,
                                          reissue_after=reissue_after))
        self.stdout.write(f"run_idle {runner.holder}: holding up to {max_sessions} IDLE sessions")
        self.stdout.flush()
        runner.run(stop=stop)
