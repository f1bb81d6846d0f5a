"""Named points of a poll where a test stops it the way a killed worker stops: the test-only
hooks, kept out of `poll()`'s signature.

The poll calls `reached(point)` at "stored" (a batch is committed, the server not touched
yet), "before_quit" (POP3: DELEs sent, QUIT not) and "post_processed" (the end of the
post-processing). Nothing is installed in production: `reached` is one check of an empty
list per batch. A test installs a handler for a block:

    with faults.installed(faults.interrupt_at("stored")):
        poll(connection_id=...)          # raises faults.Interrupt after the first commit

Handlers are process-wide (any thread's poll reaches them); a subprocess installs its own.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

POINTS = ("stored", "before_quit", "post_processed")

_handlers: list[Callable[[str], None]] = []


class Interrupt(BaseException):
    """Simulates a worker killed at a chosen point (not an Exception on purpose: the poll
    records exceptions; this one leaves its lock and RUNNING row, like a real kill)."""


def reached(point: str) -> None:
    """Called by the poll at each point."""
    for handler in _handlers:
        handler(point)


@contextmanager
def installed(handler: Callable[[str], None]) -> Iterator[None]:
    """Call `handler(point)` at every point reached within the block."""
    _handlers.append(handler)
    try:
        yield
    finally:
        _handlers.remove(handler)


def interrupt_at(point: str) -> Callable[[str], None]:
    """A handler that raises Interrupt at `point`."""
    if point not in POINTS:
        raise ValueError(f"unknown point {point!r}; one of {POINTS}")

    def handler(where: str) -> None:
        if where == point:
            raise Interrupt(f"worker killed at {where}")
    return handler
