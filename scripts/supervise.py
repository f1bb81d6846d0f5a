#!/usr/bin/env python3
"""Run several processes in the foreground with prefixed, interleaved logs.

    python scripts/supervise.py 'web=gunicorn …' 'worker=celery -A tenantmail worker' …

Each process runs in its own process group, so Ctrl-C reaches only this supervisor, which
then stops the processes in order: SIGTERM to each (Celery's warm shutdown, gunicorn's
graceful stop), a grace period (SUPERVISE_GRACE seconds, default 20) and then SIGKILL to
each whole process group, so that no pool child or gunicorn worker is left behind. A second
Ctrl-C kills at once. When one process ends on its own the others are stopped too and the
exit status is 1. The children also get SIGTERM if the supervisor itself is killed (Linux
parent-death signal). Standard library only: it runs before any dependency is installed.
"""
from __future__ import annotations

import ctypes
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

COLOURS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    buffer: bytes = b""
    prefix: bytes = b""
    returncode: int | None = None
    open_streams: set = field(default_factory=set)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to send SIGTERM when the
    # supervisor dies, even by SIGKILL, so that nothing is orphaned.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Supervisor:
    def __init__(self, children: list[Child], grace: float) -> None:
        self.children = children
        self.grace = grace
        self.stop_requested = 0  # number of stop signals received
        self.stopping_since: float | None = None
        self.failed = False
        self.out = sys.stdout.buffer
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        width = max(len(c.name) for c in children + [Child("run", [])]) + 2
        for index, child in enumerate(children):
            label = f"[{child.name}]".ljust(width)
            if colour:
                label = f"{COLOURS[index % len(COLOURS)]}{label}{RESET}"
            child.prefix = (label + " ").encode()
        self.own_prefix = (f"[run]".ljust(width) + " ").encode()

    # --- output
    def say(self, text: str) -> None:
        for line in text.splitlines():
            self.out.write(self.own_prefix + line.encode() + b"\n")
        self.out.flush()

    def _emit(self, child: Child, data: bytes, final: bool = False) -> None:
        child.buffer += data
        *lines, child.buffer = child.buffer.split(b"\n")
        if final and child.buffer:
            lines.append(child.buffer)
            child.buffer = b""
        for line in lines:
            self.out.write(child.prefix + line.rstrip(b"\r") + b"\n")
        if lines:
            self.out.flush()

    # --- signals
    def _on_signal(self, signum: int, _frame) -> None:
        self.stop_requested += 1
        if self.stop_requested == 1:
            self.say(f"{signal.Signals(signum).name} received: stopping (press Ctrl-C again to kill at once).")
        else:
            self.say("Killing now.")

    # --- processes
    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for child in self.children:
            child.proc = subprocess.Popen(
                child.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env=env,
            )
            self.say(f"started {child.name} (pid {child.proc.pid}): {shlex.join(child.argv)}")

    def _signal_group(self, child: Child, signum: int) -> None:
        try:
            os.killpg(child.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _begin_stop(self) -> None:
        self.stopping_since = time.monotonic()
        for child in self.children:
            if child.returncode is None:
                try:
                    child.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.start()
        selector = selectors.DefaultSelector()
        for child in self.children:
            os.set_blocking(child.proc.stdout.fileno(), False)
            selector.register(child.proc.stdout, selectors.EVENT_READ, child)
            child.open_streams.add(child.proc.stdout)

        while True:
            for key, _ in selector.select(timeout=0.2):
                child = key.data
                try:
                    data = os.read(key.fileobj.fileno(), 65536)
                except BlockingIOError:
                    continue
                if data:
                    self._emit(child, data)
                else:
                    selector.unregister(key.fileobj)
                    child.open_streams.discard(key.fileobj)
                    self._emit(child, b"", final=True)

            for child in self.children:
                if child.returncode is None and child.proc.poll() is not None:
                    child.returncode = child.proc.returncode
                    # Reap whatever the process left in its group (pool children, workers).
                    self._signal_group(child, signal.SIGKILL)
                    if self.stopping_since is None and not self.stop_requested:
                        self.failed = True
                        self.say(f"{child.name} exited with status {child.returncode}; stopping the others.")
                    else:
                        self.say(f"{child.name} stopped.")

            if self.stop_requested and self.stopping_since is None:
                self._begin_stop()
            elif self.failed and self.stopping_since is None:
                self._begin_stop()

            running = [c for c in self.children if c.returncode is None]
            if self.stopping_since is not None and running:
                overdue = time.monotonic() - self.stopping_since > self.grace
                if overdue or self.stop_requested > 1:
                    for child in running:
                        if overdue:
                            self.say(f"{child.name} did not stop within {self.grace:g}s; killing it.")
                        self._signal_group(child, signal.SIGKILL)
            if not running and not any(c.open_streams for c in self.children):
                break
            if not running and time.monotonic() - (self.stopping_since or time.monotonic()) > self.grace + 5:
                break  # a grandchild kept a pipe open: do not wait for it forever

        selector.close()
        self.say("all processes stopped.")
        return 1 if self.failed else 0


def parse(specs: list[str]) -> list[Child]:
    children = []
    for spec in specs:
        name, sep, command = spec.partition("=")
        if not sep or not name or not command.strip():
            raise SystemExit(f"supervise: expected NAME=COMMAND, got {spec!r}")
        argv = shlex.split(command)
        if shutil.which(argv[0]) is None:
            raise SystemExit(f"supervise: cannot run {name}: {argv[0]!r} not found")
        children.append(Child(name=name.strip(), argv=argv))
    return children


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    grace = float(os.environ.get("SUPERVISE_GRACE", "20"))
    return Supervisor(parse(argv), grace).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
